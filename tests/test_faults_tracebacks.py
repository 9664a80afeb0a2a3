"""Issue 10, tracebacks where a named error belongs: odd DOMs and option values,
read-only and corrupt databases, deeply nested items, multi-line messages,
libxl file names that are no userids, a context used across fork().

Real processes (the venv's ``domdata``) on real SQLite files, libxl
directories and tmpfs mounts; CliRunner only where a value cannot pass
through exec (a NUL)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import domdata
from domdata.cli import cli
from tests._faults import assert_one_line_error, created_domain, environment
from tests._faults import domdata as run


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'domdata.db'}"


@pytest.fixture
def one(store: str) -> str:
    """Domain 1, holding the item ``xl``."""
    assert created_domain(store) == 1
    assert run(store, "store", "1", "xl", stdin=b"domain one").returncode == 0
    return "1"


@pytest.mark.parametrize("dom", ["\u00b2", "\u0661", "\uff11", "1\u0661"])
def test_a_dom_of_other_digits_is_never_domid_1(store: str, one: str, dom: str) -> None:
    for args in (["retrieve", dom, "xl"], ["domain", "destroy", dom], ["list", dom]):
        result = run(store, *args)
        assert result.returncode in (2, 3), result
        assert b"Traceback" not in result.stderr
        assert result.stdout == b""
    assert run(store, "retrieve", one, "xl").stdout == b"domain one"


@pytest.mark.parametrize("dom", ["web\n1", "1\n", "", "a\tb", "a\x1bb"])
def test_a_dom_with_a_control_character_is_a_usage_error(store: str, one: str, dom: str) -> None:
    result = run(store, "retrieve", dom, "xl")
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr


@pytest.mark.parametrize("size", ["1" + "0" * 30, "9" * 400, "1000000001"])
def test_a_huge_max_item_size_is_a_usage_error(store: str, one: str, size: str) -> None:
    result = run(None, "store", one, "xl", stdin=b"x", env=environment(store, DOMDATA_MAX_ITEM_SIZE=size))
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr
    assert run(store, "retrieve", one, "xl").stdout == b"domain one"


def test_an_empty_host_is_a_usage_error(store: str) -> None:
    result = run(store, "--host", "", "list")
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--store", "sqlite:///tmp/a\0b", "list"],
        ["--domains", "managed\0", "list"],
        ["--host", "a\0b", "list"],
        ["retrieve", "web\0", "xl"],
        ["retrieve", "1", "x\0l"],
    ],
)
def test_a_nul_in_any_value_is_a_usage_or_domdata_error(store: str, args: list[str]) -> None:
    """CliRunner: exec cannot pass a NUL, a caller of cli() can."""
    result = CliRunner().invoke(cli, ["--store", store, *args])
    assert result.exit_code in (2, 4), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_read_only_database_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "domdata.db"
    store = f"sqlite://{path}"
    created_domain(store)
    # The file read-only (a read-only bind mount: root ignores file modes), its directory not.
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        result = run(store, "domain", "create")
    finally:
        subprocess.run(["umount", str(path)], check=True)
    assert result.returncode == 7
    assert_one_line_error(result.stderr, store)


def _corrupt(path: Path) -> None:
    """Overwrite every page after the first with garbage (the header stays valid)."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode = DELETE")
    db.close()
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:] = b"\xa5" * (len(data) - page)
    path.write_bytes(bytes(data))


CORRUPT_CREATE = ["domain", "create"]


@pytest.mark.parametrize("args", [CORRUPT_CREATE, ["domain", "destroy", "1"], ["store", "1", "xl"]])
def test_a_corrupt_page_is_a_one_line_error(tmp_path: Path, args: list[str]) -> None:
    path = tmp_path / "domdata.db"
    store = f"sqlite://{path}"
    created_domain(store)
    _corrupt(path)
    result = run(store, *args, stdin=b"x")
    assert result.returncode in (7, 8)
    assert_one_line_error(result.stderr, store)


DEPTH = 100_000


@pytest.mark.parametrize(
    ("userid", "data"),
    [
        ("libxl-json", b"[" * DEPTH + b"]" * DEPTH + b"\0"),
        ("libvirt-xml", b"<a>" * DEPTH + b"</a>" * DEPTH),
    ],
)
def test_show_of_a_deeply_nested_item_is_undecoded(
    store: str, one: str, userid: str, data: bytes
) -> None:
    assert run(store, "store", one, userid, stdin=data).returncode == 0
    shown = run(store, "show", one, userid)
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr == b""
    first, _, rest = shown.stdout.partition(b"\n")
    assert first.startswith(b"# nested too deeply")
    assert len(rest) > len(data)


def test_an_error_naming_a_dom_with_a_newline_is_one_line(store: str, one: str) -> None:
    with domdata.open(store) as ctx, pytest.raises(domdata.DomainNotFound) as raised:
        ctx.domains.find("web\n1\r\u2028x")
    assert len(str(raised.value).splitlines()) == 1


def test_libvirts_error_quoting_a_file_is_one_line(tmp_path: Path, store: str) -> None:
    pytest.importorskip("libvirt", reason="needs libvirt-python (installed by scripts/test.sh)")
    bad = tmp_path / "bad.xml"
    bad.write_text("<node>\n  <domain type='test'>\n    <name>x\n</node>\n")
    result = run(store, "--domains", f"libvirt:test://{bad}", "domain", "list")
    assert result.returncode == 10
    assert_one_line_error(result.stderr)


def _libxl_item(xen: Path, domid: int, userid: str) -> Path:
    (record,) = xen.glob(f"userdata-m.{domid}.*.domdata-domain")
    uuid = record.name.split(".")[2]
    return xen / f"userdata-d.{domid}.{uuid}.{userid}"


@pytest.mark.parametrize(
    "userid", ["injected\n 1  00000000-0000-0000-0000-000000000000  1  x", "a*b", "a b"]
)
def test_list_shows_no_libxl_file_that_is_not_a_userid(tmp_path: Path, userid: str) -> None:
    xen = tmp_path / "xen"
    xen.mkdir()
    store = f"libxl://{xen}"
    domid = created_domain(store)
    assert run(store, "store", str(domid), "xl", stdin=b"x").returncode == 0
    _libxl_item(xen, domid, userid).write_bytes(b"planted")
    for args in (["list"], ["list", str(domid)], ["list", "--json"]):
        listed = run(store, *args)
        assert listed.returncode == 0
        if "--json" in args:
            assert [i["userid"] for i in json.loads(listed.stdout)] == ["xl"]
        else:
            assert len(listed.stdout.splitlines()) == 2  # the header and the xl item


FORKED = """
import os, sys, domdata
ctx = domdata.open(sys.argv[1])
domid = ctx.managed.create("forked").domid
pid = os.fork()
if pid == 0:
    try:
        ctx.store(domid, "xl", b"child")
    except domdata.Error as exc:
        print("refused:", exc, flush=True)
        os._exit(0)
    os._exit(1)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_context_used_across_fork_is_refused_in_the_child(tmp_path: Path) -> None:
    (tmp_path / "xen").mkdir()
    for store in (f"sqlite://{tmp_path / 'domdata.db'}", f"libxl://{tmp_path / 'xen'}"):
        result = subprocess.run([sys.executable, "-c", FORKED, store], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "fork" in result.stdout
