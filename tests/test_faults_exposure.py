"""Issue 10, exposure: private files, URLs taken literally, typos that create stores,
other applications' databases. Real processes on real SQLite files and libxl
directories; all of it is fixed on the refactored store seam (strict xfail)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import domdata
from tests._faults import assert_one_line_error, created_domain, environment
from tests._faults import domdata as run

SECRET = b"hunter2-the-password"


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A 0755 directory that every user can reach (pytest's tmp_path is 0700)."""
    made = Path(tempfile.mkdtemp(prefix="domdata-faults-"))
    made.chmod(0o755)
    try:
        yield made
    finally:
        shutil.rmtree(made)


def test_sqlite_files_are_private_in_a_world_readable_directory(open_dir: Path) -> None:
    state = open_dir / "mytool"
    state.mkdir(mode=0o755)
    store = f"sqlite://{state / 'domdata.db'}"
    domid = created_domain(store)
    assert run(store, "store", str(domid), "password", stdin=SECRET).returncode == 0
    # A process holds the database open, so -wal and -shm exist.
    held = subprocess.Popen(
        ["domdata", "lock", str(domid), "--", "sh", "-c", "echo held; read line"],
        env=environment(store),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert held.stdout is not None
        assert held.stdout.readline() == b"held\n"
        files = sorted(state.iterdir())
        assert {f.name for f in files} >= {"domdata.db", "domdata.db-wal", "domdata.db-shm"}
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f"{f.name} is {oct(f.stat().st_mode)}"
            read = subprocess.run(["runuser", "-u", "nobody", "--", "cat", str(f)], capture_output=True)
            assert read.returncode != 0
            assert SECRET not in read.stdout
    finally:
        assert held.stdin is not None
        held.stdin.close()
        held.wait(timeout=60)


@pytest.mark.parametrize("odd", ["a#b", "a?b"])
def test_the_default_store_lands_under_xdg_state_home_whatever_it_holds(tmp_path: Path, odd: str) -> None:
    state = tmp_path / odd
    env = environment(XDG_STATE_HOME=str(state))
    made = run(None, "domain", "create", env=env)
    assert made.returncode == 0, made.stderr
    assert (state / "domdata" / "domdata.db").is_file()


def test_a_percent_in_xdg_state_home_is_taken_literally(tmp_path: Path) -> None:
    env = environment(XDG_STATE_HOME=str(tmp_path / "%41"))
    assert run(None, "domain", "create", env=env).returncode == 0
    assert (tmp_path / "%41" / "domdata" / "domdata.db").is_file()
    assert not (tmp_path / "A").exists()


def test_a_typo_in_a_sqlite_path_creates_nothing(tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path / 'newcomer' / 'x.db'}"
    result = run(store, "domain", "create")
    assert result.returncode == 7
    assert_one_line_error(result.stderr, store)
    assert not (tmp_path / "newcomer").exists()


def test_a_missing_libxl_directory_is_unavailable_and_not_created(tmp_path: Path) -> None:
    store = f"libxl://{tmp_path / 'xem'}"
    result = run(store, "list")
    assert result.returncode == 7
    assert_one_line_error(result.stderr, store)
    assert not (tmp_path / "xem").exists()


def test_a_failed_open_leaves_no_database(tmp_path: Path) -> None:
    with pytest.raises(domdata.SourceUnavailable):
        domdata.open(f"sqlite://{tmp_path / 'x.db'}", "nonsense")
    assert list(tmp_path.iterdir()) == []


def _foreign(path: Path, *statements: str) -> bytes:
    with sqlite3.connect(path) as db:
        for statement in statements:
            db.execute(statement)
    db.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    "statements",
    [
        ["CREATE TABLE invoices (id INTEGER PRIMARY KEY, n REAL)", "INSERT INTO invoices VALUES (1, 2.5)"],
        ["CREATE TABLE domains (x TEXT)", "CREATE TABLE userdata (y BLOB)"],
    ],
    ids=["other-application", "conflicting-tables"],
)
@pytest.mark.parametrize("args", [["list"], ["domain", "create"]])
def test_another_applications_database_is_refused_byte_for_byte(
    tmp_path: Path, statements: list[str], args: list[str]
) -> None:
    path = tmp_path / "app.db"
    before = _foreign(path, *statements)
    result = run(f"sqlite://{path}", *args)
    assert result.returncode == 7
    assert_one_line_error(result.stderr, str(path))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]


def test_a_newer_schema_is_refused_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "domdata.db"
    store = f"sqlite://{path}"
    created_domain(store)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 999")
        db.execute("PRAGMA journal_mode = DELETE")
    db.close()
    before = path.read_bytes()
    result = run(store, "domain", "create")
    assert result.returncode == 7
    assert_one_line_error(result.stderr, store, "999")
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "suffix", ["x.db?mode=ro", "x.db#fragment", "a%2Fb.db"], ids=["query", "fragment", "encoded-slash"]
)
def test_a_sqlite_url_with_unsupported_parts_is_a_usage_error(tmp_path: Path, suffix: str) -> None:
    result = run(f"sqlite://{tmp_path}/{suffix}", "domain", "create")
    assert result.returncode == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("store", ["sqlite:///:memory:", "libxl:///"])
def test_urls_naming_no_usable_store_are_refused(store: str) -> None:
    before = set(os.listdir("/"))
    try:
        result = run(store, "list")
        assert result.returncode == 2
        assert set(os.listdir("/")) == before
    finally:
        for debris in set(os.listdir("/")) - before:
            Path("/", debris).unlink()


@pytest.mark.parametrize("scheme", ["sqlite", "libxl"])
def test_a_nul_in_a_url_is_a_domdata_error(tmp_path: Path, scheme: str) -> None:
    with pytest.raises(domdata.Error):
        domdata.open(f"{scheme}://{tmp_path}/a\0b")
