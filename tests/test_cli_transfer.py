"""``domdata export`` and ``domdata import``: one tar archive any tar reads,
moved between stores that share nothing, all or nothing on import."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import domdata
from domdata.cli import cli
from tests.kits.store_postgresql import KIT

#: Every byte value, and userids that are awkward as file names.
DATA = {"xl": b"name = 'web1'\n", "bin": bytes(range(256)) * 3, "..": b"dots", "%2E": b"percent"}


def run(store: str, *args: str, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, ["--store", store, *args], input=stdin, catch_exceptions=False)


def filled(store: str, name: str = "web1", items: dict[str, bytes] = DATA) -> str:
    """A managed domain *name* with *items*; its domid."""
    domid = run(store, "domain", "create", name).stdout.strip()
    for userid, data in items.items():
        assert run(store, "store", domid, userid, stdin=data).exit_code == 0
    return domid


def items(store: str, dom: str) -> dict[str, bytes]:
    with domdata.open(store) as ctx:
        domid = ctx.domains.find(dom).domid
        return {i.userid: ctx.retrieve(domid, i.userid) for i in ctx.list(domid)}


def export(store: str, *args: str) -> bytes:
    result = run(store, "export", *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout_bytes


@pytest.fixture
def here(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'here.db'}"


@pytest.fixture
def there(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'there.db'}"


def test_a_domain_moves_between_stores_that_share_nothing(here: str, there: str) -> None:
    filled(here)
    archive = export(here, "web1")
    run(there, "domain", "create", "web1-moved")
    result = run(there, "import", "web1-moved", stdin=archive)
    assert (result.exit_code, result.stderr) == (0, "imported 4 items into web1-moved\n")
    assert items(there, "web1-moved") == DATA
    assert items(here, "web1") == DATA


def test_the_archive_is_read_by_tar_itself(here: str, tmp_path: Path) -> None:
    filled(here)
    path = tmp_path / "web1.tar"
    assert run(here, "export", "web1", "-o", str(path)).exit_code == 0
    listing = subprocess.run(["tar", "-tf", path], capture_output=True, text=True, check=True).stdout.split()
    assert listing[-1] == "manifest.json"
    assert len(listing) == 1 + len(DATA)
    manifest = json.loads(subprocess.run(["tar", "-xOf", path, "manifest.json"], capture_output=True).stdout)
    assert (manifest["format"], manifest["version"], manifest["store"]) == ("domdata-export", 1, here)
    assert manifest["domains"][0]["name"] == "web1"
    assert {i["userid"]: i["size"] for i in manifest["items"]} == {u: len(d) for u, d in DATA.items()}
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xf", path, "-C", unpacked], check=True)
    for item in manifest["items"]:
        assert (unpacked / item["member"]).read_bytes() == DATA[item["userid"]]
    # Everything lands in one directory per domain, beside the manifest.
    assert sorted(p.name for p in unpacked.iterdir()) == sorted(
        [Path(listing[0]).parent.name, "manifest.json"]
    )


def test_an_existing_libxl_directory_is_adopted_into_sqlite(tmp_path: Path, there: str) -> None:
    xen = tmp_path / "xen"
    xen.mkdir()
    libxl = f"libxl://{xen}"
    domid = filled(libxl, items={"libvirt-xml": b"<domain/>"})
    (uuid,) = {i.uuid for i in domdata.open(libxl).list()}
    # An item libxl itself wrote: a raw file beside the others.
    (xen / f"userdata-d.{domid}.{uuid}.xl").write_bytes(b"memory = 512\n")
    run(there, "domain", "create", "web1", "--uuid", uuid)
    assert run(there, "import", "web1", stdin=export(libxl, "web1")).exit_code == 0
    assert items(there, "web1") == {"libvirt-xml": b"<domain/>", "xl": b"memory = 512\n"}


def test_sqlite_to_postgresql(here: str, tmp_path: Path, kits: None) -> None:
    postgresql = KIT.url(tmp_path)
    filled(here)
    run(postgresql, "--host", "xen-07", "domain", "create", "web1")
    assert run(postgresql, "--host", "xen-07", "import", "web1", stdin=export(here, "web1")).exit_code == 0
    with domdata.open(postgresql, host="xen-07") as ctx:
        domid = ctx.domains.find("web1").domid
        assert {i.userid: ctx.retrieve(domid, i.userid) for i in ctx.list(domid)} == DATA


def test_a_backup_of_the_whole_store_restores_domain_by_domain(here: str, there: str) -> None:
    filled(here, "web1", {"xl": b"one"})
    filled(here, "web2", {"xl": b"two", "other": b"2"})
    backup = export(here, "--all")
    run(there, "domain", "create", "restored")
    ambiguous = run(there, "import", "restored", stdin=backup)
    assert ambiguous.exit_code == 2
    assert "holds 2 domains: choose one with --from" in ambiguous.stderr
    assert run(there, "import", "restored", "--from", "web2", stdin=backup).exit_code == 0
    assert items(there, "restored") == {"xl": b"two", "other": b"2"}


def test_import_refuses_an_item_the_target_refuses_before_writing_anything(here: str, there: str) -> None:
    filled(here, items={"small": b"s", "big": b"x" * 100})
    archive = export(here, "web1")
    filled(there, items={"small": b"old"})
    refused = run(there, "--max-item-size", "50", "import", "web1", stdin=archive)
    assert refused.exit_code == 5
    assert "big: 100 bytes is over the limit of 50 bytes per item; nothing imported" in refused.stderr
    assert f"store {there}, domain web1" in refused.stderr
    assert items(there, "web1") == {"small": b"old"}


def _archive(userid: str, data: bytes) -> bytes:
    """An archive such as export writes, holding an item with any userid."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        manifest = {
            "format": "domdata-export",
            "version": 1,
            "items": [{"domid": 1, "uuid": "u", "userid": userid, "size": len(data), "member": "m"}],
        }
        for name, content in (("m", data), ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_import_refuses_a_userid_the_target_refuses(there: str) -> None:
    filled(there, items={"xl": b"old"})
    refused = run(there, "import", "web1", stdin=_archive("a/b", b"x"))
    assert refused.exit_code == 4
    assert "nothing imported" in refused.stderr
    assert items(there, "web1") == {"xl": b"old"}


@pytest.mark.parametrize(
    ("archive", "why"),
    [
        (b"not a tar file at all", "not a domdata archive"),
        (_archive("xl", b"x").replace(b'"version": 1', b'"version": 9'), "format version 9"),
    ],
)
def test_import_refuses_what_is_not_an_archive(there: str, archive: bytes, why: str) -> None:
    filled(there, items={"xl": b"old"})
    refused = run(there, "import", "web1", stdin=archive)
    assert refused.exit_code == 1
    assert why in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    assert items(there, "web1") == {"xl": b"old"}


def test_a_store_failing_midway_puts_back_what_was_there(here: str, tmp_path: Path) -> None:
    filled(here, items={"a": b"new a", "b": b"new b"})
    archive = export(here, "web1")
    xen = tmp_path / "xen"
    xen.mkdir()
    libxl = f"libxl://{xen}"
    domid = filled(libxl, items={"a": b"old a"})
    (uuid,) = {i.uuid for i in domdata.open(libxl).list()}
    # The second item cannot be written: a directory stands where its temporary file goes.
    (xen / f"userdata-n.{domid}.{uuid}.b").mkdir()
    failed = run(libxl, "import", "web1", stdin=archive)
    assert failed.exit_code == 7
    assert "nothing imported (undid the 1 item stored before it)" in failed.stderr
    assert items(libxl, "web1")["a"] == b"old a"


def test_export_needs_one_dom_or_all(here: str) -> None:
    filled(here)
    assert run(here, "export").exit_code == 2
    assert run(here, "export", "web1", "--all").exit_code == 2
    assert run(here, "export", "nosuch").exit_code == 3


def in_terminal(store: str, *args: str) -> tuple[int, bytes]:
    """Run domdata with stdin, stdout and stderr on a terminal: status and output."""
    primary, secondary = pty.openpty()
    env = {**os.environ, "DOMDATA_STORE": store}
    argv = [sys.executable, "-m", "domdata", *args]
    process = subprocess.Popen(argv, stdin=secondary, stdout=secondary, stderr=secondary, env=env)
    os.close(secondary)
    seen = b""
    while select.select([primary], [], [], 60)[0]:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    return process.wait(timeout=60), seen


def test_progress_shows_on_a_terminal_and_is_silent_elsewhere(here: str, tmp_path: Path) -> None:
    for n in range(3):
        filled(here, f"web{n}", {"xl": b"x"})
    piped = run(here, "export", "--all", "-o", str(tmp_path / "piped.tar"))
    assert piped.stderr == "exported 3 items of 3 domains\n"
    status, seen = in_terminal(here, "export", "--all", "-o", str(tmp_path / "tty.tar"))
    assert status == 0
    assert b"exporting" in seen
    assert b"exported 3 items of 3 domains" in seen


def test_no_archive_to_or_from_a_terminal(here: str) -> None:
    filled(here)
    status, seen = in_terminal(here, "export", "web1")
    assert (status, b"the archive is binary" in seen) == (2, True)
    status, seen = in_terminal(here, "import", "web1")
    assert (status, b"name the archive FILE, or pipe it in" in seen) == (2, True)
