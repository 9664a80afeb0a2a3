"""``domdata --domains xen`` on the command line, in subprocesses that preload
the shim; libxl's own userdata calls on the same files; and the two ways the
source is unavailable, with the real libraries and no shim."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from domdata import DomainNotFound, ReapRefused, SourceUnavailable
from domdata.cli import EXIT_STATUS
from domdata.domains._xenlight import SONAMES
from tests.kits.source_xen import DOM0, Hypervisor
from tests.xen.conftest import BIN, Shell, libxl_userdata, need_root


def test_domain_list_shows_libxls_domains(xen: Hypervisor, shell: Shell) -> None:
    dom = xen.start("listed")
    done = shell("domain", "list")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.decode().splitlines()]
    assert rows[0] == ["DOMID", "UUID", "NAME"]
    assert [str(DOM0.domid), DOM0.uuid, "Domain-0"] in rows
    assert [str(dom.domid), dom.uuid, "listed"] in rows
    as_json = json.loads(shell("domain", "list", "--json").stdout)
    assert {"domid": dom.domid, "uuid": dom.uuid, "name": "listed"} in as_json


def test_store_retrieve_list_by_domid_uuid_and_name(xen: Hypervisor, shell: Shell) -> None:
    dom = xen.start("cli-web")
    assert shell("store", "cli-web", "xl", stdin=b"name = 'web'\n").returncode == 0
    for text in (str(dom.domid), dom.uuid, "cli-web"):
        done = shell("retrieve", text, "xl")
        assert (done.returncode, done.stdout) == (0, b"name = 'web'\n"), done.stderr
    listed = json.loads(shell("list", str(dom.domid), "--json").stdout)
    assert [(i["domid"], i["uuid"], i["userid"], i["size"]) for i in listed] == [
        (dom.domid, dom.uuid, "xl", 13)
    ]


def test_a_destroyed_domain_is_not_found_and_reap_collects_it(xen: Hypervisor, shell: Shell) -> None:
    dom, survivor = xen.start(), xen.start()
    shell("store", str(dom.domid), "xl", stdin=b"doomed")
    shell("store", str(survivor.domid), "xl", stdin=b"kept")
    xen.destroy(dom.domid)
    done = shell("retrieve", str(dom.domid), "xl")
    assert done.returncode == EXIT_STATUS[DomainNotFound]
    assert len(done.stderr.splitlines()) == 1
    reaped = json.loads(shell("reap", "--json").stdout)
    assert reaped["incarnations"] == [{"domid": dom.domid, "uuid": dom.uuid}]
    left = json.loads(shell("list", "--json").stdout)
    assert [(i["domid"], i["userid"]) for i in left] == [(survivor.domid, "xl")]


def test_libxl_and_domdata_read_each_others_userdata(xen: Hypervisor, tmp_path: Path) -> None:
    """Debian's libxl_userdata_store / _retrieve and domdata on one directory."""
    store_dir = tmp_path / "root" / "xen"
    dom = xen.start("shared")
    written = libxl_userdata(xen, store_dir, "store", dom.domid, "xl", b"from libxl\n")
    assert written.returncode == 0, written.stderr
    assert os.listdir(store_dir) == [f"userdata-d.{dom.domid}.{dom.uuid}.xl"]
    env = xen.env
    run = [str(BIN / "domdata"), "--store", f"libxl://{store_dir}", "--domains", "xen"]
    done = subprocess.run([*run, "retrieve", "shared", "xl"], capture_output=True, env=env, check=False)
    assert (done.returncode, done.stdout) == (0, b"from libxl\n"), done.stderr
    subprocess.run([*run, "store", "shared", "libvirt-xml"], input=b"<domain/>", env=env, check=True)
    read = libxl_userdata(xen, store_dir, "retrieve", dom.domid, "libvirt-xml")
    assert (read.returncode, read.stdout) == (0, b"<domain/>"), read.stderr


def test_reap_of_libxls_directory_is_allowed_with_xen_only(xen: Hypervisor, tmp_path: Path) -> None:
    store_dir = tmp_path / "root" / "xen"
    live, dead = xen.start("live"), xen.start("dead")
    for dom in (live, dead):
        config = json.dumps({"c_info": {"name": dom.name, "uuid": dom.uuid}}).encode() + b"\0"
        written = libxl_userdata(xen, store_dir, "store", dom.domid, "libxl-json", config)
        assert written.returncode == 0, written.stderr
    xen.destroy(dead.domid)
    env = {**xen.env, "DOMDATA_STORE": f"libxl://{store_dir}"}
    refused = subprocess.run([str(BIN / "domdata"), "reap"], capture_output=True, env=env, check=False)
    assert refused.returncode == EXIT_STATUS[ReapRefused]
    assert b"reap with the domain source xen" in refused.stderr
    assert len(os.listdir(store_dir)) == 2
    reaped = subprocess.run(
        [str(BIN / "domdata"), "--domains", "xen", "reap", "--json"],
        capture_output=True,
        env=env,
        check=False,
    )
    assert reaped.returncode == 0, reaped.stderr
    assert json.loads(reaped.stdout)["incarnations"] == [{"domid": dead.domid, "uuid": dead.uuid}]
    # What is left: the live domain's item, and the source the directory now records.
    left = f"userdata-d.{live.domid}.{live.uuid}.libxl-json"
    assert sorted(os.listdir(store_dir)) == ["domdata-source", left]
    assert (store_dir / "domdata-source").read_text() == "xen\n"
    read = libxl_userdata(xen, store_dir, "retrieve", live.domid, "libxl-json")
    assert read.returncode == 0, read.stderr
    assert read.stdout.startswith(b'{"c_info"')


def _real_libraries_env(tmp_path: Path) -> dict[str, str]:
    """No shim: what a user's machine without Xen runs."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "DOMDATA_XEN_SHIM_DOMAINS")}
    return {**env, "DOMDATA_STORE": f"sqlite://{tmp_path / 'domdata.db'}", "DOMDATA_DOMAINS": "xen"}


def test_no_hypervisor_is_source_unavailable_in_one_line(xen: Hypervisor, tmp_path: Path) -> None:
    if any(Path(p).exists() for p in ("/dev/xen/privcmd", "/proc/xen/privcmd")):
        pytest.skip("this machine is a Xen host")
    done = subprocess.run(
        [str(BIN / "domdata"), "domain", "list"],
        capture_output=True,
        env=_real_libraries_env(tmp_path),
        check=False,
    )
    assert done.returncode == EXIT_STATUS[SourceUnavailable]
    assert done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("domdata: xen: libxenlight cannot reach the hypervisor: ")
    assert "cannot open libxc handle" in lines[0]


# Run in a private mount namespace, then exec domdata: "$1" is the directory
# holding libxenlight, "$2" a scratch directory.
_HIDE = {
    # Every libxenlight file replaced by /dev/null: there, but it does not load.
    "broken": 'for lib in "$1"/libxenlight.so*; do mount --bind /dev/null "$lib"; done',
    # The directory replaced by symbolic links to all its files but
    # libxenlight's (through a second mount of it): not installed.
    "absent": 'mkdir "$2/real" "$2/farm" && mount --bind "$1" "$2/real" && '
    'for f in "$2"/real/* "$2"/real/.[!.]*; do case ${f##*/} in libxenlight.so*) ;; '
    '*) ln -s "$f" "$2/farm/${f##*/}";; esac; done && mount --bind "$2/farm" "$1"',
}


@pytest.mark.parametrize(("how", "why"), [("broken", "file too short"), ("absent", "not installed")])
def test_libxenlight_missing_is_source_unavailable_in_one_line(
    xen: Hypervisor, tmp_path: Path, how: str, why: str
) -> None:
    """libxenlight hidden in a private mount namespace, so that dlopen fails
    as on a machine where it is broken or not installed."""
    need_root("hiding libxenlight in a mount namespace")
    listed = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    paths = {line.split(" => ")[1] for line in listed.splitlines() if line.strip().split(" ")[0] in SONAMES}
    (directory,) = {os.path.dirname(os.path.realpath(path)) for path in paths}
    script = f'set -e; {_HIDE[how]}; exec "$DOMDATA" reap'
    namespace = ["unshare", "--mount", "--propagation", "private"]
    done = subprocess.run(
        [*namespace, "sh", "-c", script, "sh", directory, str(tmp_path)],
        capture_output=True,
        env={**_real_libraries_env(tmp_path), "DOMDATA": str(BIN / "domdata")},
        check=False,
    )
    assert done.returncode == EXIT_STATUS[SourceUnavailable], done.stderr
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("domdata: xen: cannot load libxenlight: ")
    assert why in lines[0]
