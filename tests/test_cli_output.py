"""The command line for people: --version, headers, plurals, no None, what
unlink and show say, migrate, and DOMDATA_STORE for domdata.open()."""

from __future__ import annotations

import importlib.metadata
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import domdata
from domdata.cli import cli
from tests.kits.store_postgresql import KIT


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'cli.db'}"


def run(store: str, *args: str, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, ["--store", store, *args], input=stdin, catch_exceptions=False)


@pytest.fixture
def domid(store: str) -> int:
    return int(run(store, "domain", "create", "web1").output)


def test_version_comes_from_the_package_metadata(store: str) -> None:
    result = run(store, "--version")
    assert result.exit_code == 0
    assert result.stdout == f"domdata {importlib.metadata.version('domdata')}\n"
    assert domdata.__version__ == importlib.metadata.version("domdata")


def test_import_domdata_does_not_read_the_package_metadata() -> None:
    code = "import sys, domdata; print('importlib.metadata' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_an_unknown_attribute_of_the_package_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        domdata.no_such_thing  # noqa: B018


def test_domain_list_has_headers(store: str, domid: int) -> None:
    header, row = run(store, "domain", "list").stdout.splitlines()
    assert header.split() == ["DOMID", "UUID", "NAME"]
    assert row.split()[0] == str(domid)
    assert row.split()[2] == "web1"


def test_list_has_headers_and_aligned_columns(store: str, domid: int) -> None:
    run(store, "store", "web1", "xl", stdin=b"x" * 1234)
    run(store, "store", "web1", "a", stdin=b"y")
    header, *rows = run(store, "list", "web1").stdout.splitlines()
    assert header.split() == ["DOMID", "UUID", "SIZE", "USERID"]
    assert sorted(r.split()[2:] for r in rows) == [["1", "a"], ["1234", "xl"]]
    assert len({len(line) - len(line.split()[-1]) for line in [header, *rows]}) == 1


def test_list_all_hosts_never_prints_none(store: str, domid: int) -> None:
    run(store, "store", "web1", "xl", stdin=b"x")
    result = run(store, "list", "--all-hosts")
    header, row = result.stdout.splitlines()
    assert header.split() == ["HOST", "DOMID", "UUID", "SIZE", "USERID"]
    assert "None" not in result.stdout
    assert row.split()[0] == "-"


def test_json_outputs_keep_their_shape(store: str, domid: int) -> None:
    run(store, "store", "web1", "xl", stdin=b"x")
    (item,) = json.loads(run(store, "list", "--all-hosts", "--json").stdout)
    assert item == {"domid": domid, "uuid": item["uuid"], "userid": "xl", "size": 1, "host": None}


def test_reap_counts_in_the_singular_and_plural(store: str, domid: int, tmp_path: Path) -> None:
    run(store, "store", "web1", "xl", stdin=b"x")
    # The domain dies without destroy: its record goes behind domdata's back.
    with sqlite3.connect(tmp_path / "cli.db") as db:
        db.execute("DELETE FROM domains")

    def last(*args: str) -> str:
        return run(store, "reap", *args).stdout.splitlines()[-1]

    assert last("--dry-run") == "would remove 1 item of 1 dead incarnation"
    assert last() == "removed 1 item of 1 dead incarnation"
    assert last() == "removed 0 items of 0 dead incarnations"


def test_unlink_says_whether_there_was_an_item(store: str, domid: int) -> None:
    run(store, "store", "web1", "xl", stdin=b"x")
    there = run(store, "unlink", "web1", "xl")
    assert (there.exit_code, there.stdout) == (0, "removed xl of web1\n")
    absent = run(store, "unlink", "web1", "xl")
    assert (absent.exit_code, absent.stdout) == (0, "web1 has no xl: nothing to remove\n")


def test_unlink_for_scripts(store: str, domid: int) -> None:
    run(store, "store", "web1", "xl", stdin=b"x")
    assert json.loads(run(store, "unlink", "web1", "xl", "--json").stdout) == {"removed": True}
    assert json.loads(run(store, "unlink", "web1", "xl", "--json").stdout) == {"removed": False}
    quiet = run(store, "unlink", "web1", "xl", "--quiet")
    assert (quiet.exit_code, quiet.stdout) == (0, "")


def test_show_of_an_absent_item_says_so_on_stderr(store: str, domid: int) -> None:
    result = run(store, "show", "web1", "xl")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == "domdata: web1 has no xl\n"


def test_migrate_on_a_store_without_hosts_is_not_clustered(store: str, domid: int) -> None:
    result = run(store, "migrate", "web1", "--to-domid", "12")
    assert result.exit_code == 16
    assert "no hosts to migrate between" in result.stderr


def test_migrate_needs_a_target_domid(store: str, domid: int) -> None:
    assert run(store, "migrate", "web1").exit_code == 2


def test_migrate_moves_the_data_to_another_host(tmp_path: Path, kits: None) -> None:
    url = KIT.url(tmp_path)
    domid = run(url, "--host", "a", "domain", "create", "web1").stdout.strip()
    run(url, "--host", "a", "store", domid, "xl", stdin=b"cfg")
    moved = run(url, "--host", "a", "migrate", "web1", "--to-domid", "12", "--to-host", "b")
    assert (moved.exit_code, moved.stdout) == (0, "moved 1 item of web1 to domid 12 on b\n")
    assert run(url, "--host", "b", "retrieve", "12", "xl").stdout_bytes == b"cfg"
    assert run(url, "--host", "a", "retrieve", domid, "xl").exit_code == 3
    as_json = run(url, "--host", "b", "migrate", "12", "--to-domid", "3", "--json")
    assert json.loads(as_json.stdout) == {"items": 1, "domid": 3, "host": None}


def test_open_without_a_store_honours_domdata_store(tmp_path: Path) -> None:
    code = "import domdata; ctx = domdata.open(); print(ctx.store_url); ctx.close()"
    url = f"sqlite://{tmp_path / 'env.db'}"
    env = {**os.environ, "DOMDATA_STORE": url, "XDG_STATE_HOME": str(tmp_path / "state")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == url
    assert (tmp_path / "env.db").exists()
    assert not (tmp_path / "state").exists()
