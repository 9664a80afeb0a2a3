"""Issue 10, the shape of every error and faults that stop unrelated work:
broken registry plugins, ``lock -- NOTEXECUTABLE``, the exit-status table,
errors naming their store, a refused PostgreSQL connection, and libxl entries
that cannot be removed. Real processes on real stores; the plugins are real
installed entry points (a throw-away dist-info on PYTHONPATH)."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path

import pytest

from domdata import _errors as errors
from domdata.cli import EXIT_STATUS
from tests._faults import assert_one_line_error, created_domain, domdata, environment

ROOT = Path(__file__).parent.parent


def _install_plugin(where: Path, name: str, source: str) -> dict[str, str]:
    """An installed package whose ``domdata.userids`` entry point *name* is
    ``broken_plugin:USERIDS``, with *source* as its module; the environment that sees it."""
    (where / "broken_plugin.py").write_text(source)
    dist = where / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[domdata.userids]\n{name} = broken_plugin:USERIDS\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(where), os.environ.get("PYTHONPATH")]))}


PLUGINS = {
    "raises": "raise RuntimeError('the plugin is broken\\nover two lines')\n",
    "not-a-userid": "USERIDS = ['xl', 42]\n",
    "bad-userid": (
        "from domdata.registry import Userid\nUSERIDS = [Userid('a/b', 'me', 'text', 'a slash', None)]\n"
    ),
    "not-iterable": "USERIDS = 42\n",
    "missing": "OTHER = []\n",
}


@pytest.mark.parametrize("source", PLUGINS.values(), ids=PLUGINS.keys())
def test_a_broken_plugin_is_skipped_with_one_line_naming_it(tmp_path: Path, source: str) -> None:
    store = f"sqlite://{tmp_path / 'domdata.db'}"
    env = environment(store, **_install_plugin(tmp_path, "fancy", source))
    listed = domdata(store, "registry", "--json", env=env)
    assert listed.returncode == 0
    assert_one_line_error(listed.stderr, "'fancy'", "broken_plugin:USERIDS")
    assert {"xl", "libxl-json"} <= {e["userid"] for e in json.loads(listed.stdout)}
    domid = str(created_domain(store))
    assert domdata(store, "store", domid, "libxl-json", stdin=b'{"a": 1}\0').returncode == 0
    shown = domdata(store, "show", domid, "libxl-json", env=env)
    assert shown.returncode == 0
    assert json.loads(shown.stdout) == {"a": 1}
    assert_one_line_error(shown.stderr, "'fancy'")


def test_a_plugin_decoder_that_fails_falls_back_to_the_raw_data(tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path / 'domdata.db'}"
    source = (
        "from domdata.registry import Userid\n"
        "def boom(data): raise KeyError('no')\n"
        "USERIDS = [Userid('org.example.x', 'me', 'magic', 'fails', boom)]\n"
    )
    env = environment(store, **_install_plugin(tmp_path, "fancy", source))
    domid = str(created_domain(store))
    assert domdata(store, "store", domid, "org.example.x", stdin=b"plain").returncode == 0
    shown = domdata(store, "show", domid, "org.example.x", env=env)
    assert shown.returncode == 0
    assert shown.stderr == b""
    assert shown.stdout.splitlines()[1:] == [b"plain"]


def test_lock_of_a_command_that_cannot_run_is_126_one_line_and_documented(tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path / 'domdata.db'}"
    domid = str(created_domain(store))
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\nexit 0\n")
    result = domdata(store, "lock", domid, "--", str(script))
    assert result.returncode == 126
    assert_one_line_error(result.stderr, store, str(script))
    missing = domdata(store, "lock", domid, "--", str(tmp_path / "missing"))
    assert missing.returncode == 127
    assert_one_line_error(missing.stderr, store)
    section = (ROOT / "README.md").read_text().split("### Exit statuses")[1]
    for status in (126, 127, 130, 141, 14):
        assert f"| {status} |" in section


def test_invalid_data_has_its_own_documented_status() -> None:
    assert errors.InvalidData in EXIT_STATUS
    statuses = list(EXIT_STATUS.values())
    assert len(set(statuses)) == len(statuses)
    assert f"| {EXIT_STATUS[errors.InvalidData]} | InvalidData" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("dom", ["nosuchname", "12345678-1234-1234-1234-123456789abc"])
def test_domain_not_found_by_name_or_uuid_names_the_store(tmp_path: Path, dom: str) -> None:
    store = f"sqlite://{tmp_path / 'domdata.db'}"
    for args in (["retrieve", dom, "xl"], ["domain", "destroy", dom]):
        result = domdata(store, *args)
        assert result.returncode == 3
        assert_one_line_error(result.stderr, store, dom)


def test_a_refused_postgresql_connection_fails_at_once() -> None:
    pytest.importorskip("psycopg", reason="needs psycopg (installed by scripts/test.sh)")
    with socket.socket() as probe, tempfile.TemporaryDirectory() as nowhere:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        # Nothing listens on that socket directory: the server refuses at once.
        store = f"postgresql:///x?host={nowhere}&port={port}&user=postgres&connect_timeout=30"
        # A hang guard far below connect_timeout: only waiting the whole timeout fails.
        result = domdata(store, "list", timeout=10)
    assert result.returncode == 7
    assert_one_line_error(result.stderr)


@pytest.fixture
def xen(tmp_path: Path) -> Path:
    made = tmp_path / "xen"
    made.mkdir()
    return made


def _item_path(xen: Path, domid: str, userid: str) -> Path:
    (record,) = xen.glob(f"userdata-m.{domid}.*.domdata-domain")
    return xen / f"userdata-d.{domid}.{record.name.split('.')[2]}.{userid}"


def _blocked(store: str, xen: Path) -> str:
    """A domain with items ``a`` and ``b``, ``b`` made unremovable (a non-empty
    directory at its path); its domid."""
    domid = str(created_domain(store))
    for userid in ("a", "b"):
        assert domdata(store, "store", domid, userid, stdin=b"data").returncode == 0
    blocked = _item_path(xen, domid, "b")
    blocked.unlink()
    blocked.mkdir()
    (blocked / "inside").write_bytes(b"x")
    return domid


def test_a_libxl_destroy_that_cannot_finish_leaves_the_domain(xen: Path) -> None:
    store = f"libxl://{xen}"
    domid = _blocked(store, xen)
    result = domdata(store, "domain", "destroy", domid)
    assert result.returncode != 0
    assert_one_line_error(result.stderr, store, domid)
    assert domid in [str(d["domid"]) for d in json.loads(domdata(store, "domain", "list", "--json").stdout)]
    assert domdata(store, "retrieve", domid, "a").stdout == b"data"


def test_a_libxl_reap_collects_every_other_domain(xen: Path) -> None:
    store = f"libxl://{xen}"
    blocked = _blocked(store, xen)
    healthy = str(created_domain(store, "healthy"))
    assert domdata(store, "store", healthy, "a", stdin=b"data").returncode == 0
    unremovable = _item_path(xen, blocked, "b")
    for domid in (blocked, healthy):
        # Both end behind domdata's back: their records go, their items stay.
        next(xen.glob(f"userdata-m.{domid}.*.domdata-domain")).unlink()
    result = domdata(store, "reap")
    assert result.returncode != 0
    line = assert_one_line_error(result.stderr, store)
    assert str(unremovable) in line
    assert not list(xen.glob(f"userdata-d.{healthy}.*"))
