"""What only the SQLite store has: its file, its pragmas, a full disk, a
directory it cannot create its WAL in."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import domdata


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a real ENOSPC, not a simulated one."""
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_fails_the_store_and_keeps_the_old_item(small_disk: Path) -> None:
    url = f"sqlite://{small_disk / 'domdata.db'}"
    with domdata.open(url) as ctx:
        dom = ctx.managed.create()
        ctx.store(dom.domid, "xl", b"the old config")
        filler = os.urandom(256 * 1024)

        def fill() -> None:
            for n in range(64):
                ctx.store(dom.domid, f"filler{n}", filler)

        with pytest.raises(domdata.StoreUnavailable) as caught:
            fill()
        message = str(caught.value)
        assert "full" in message
        assert url in message
        assert f"domain {dom.domid}" in message
        assert ctx.retrieve(dom.domid, "xl") == b"the old config"
    with domdata.open(url) as again:
        assert again.retrieve(dom.domid, "xl") == b"the old config"


#: Ways to make a directory unwritable, even to root (who ignores its mode):
#: immutable (no entry can be added; its files stay writable), or a read-only
#: bind mount of it (its files read-only too).
_UNWRITABLE = {
    "immutable": ([["chattr", "+i", "{0}"]], [["chattr", "-i", "{0}"]]),
    "read-only-mount": (
        [["mount", "--bind", "{0}", "{0}"], ["mount", "-o", "remount,bind,ro", "{0}"]],
        [["umount", "{0}"]],
    ),
}


@contextmanager
def _unwritable(directory: Path, how: str) -> Iterator[None]:
    make, undo = _UNWRITABLE[how]
    done = 0
    try:
        for argv in make:
            run = subprocess.run([a.format(directory) for a in argv], capture_output=True, text=True)
            if run.returncode != 0:
                if os.environ.get("CI"):
                    raise AssertionError(f"CI runs as root on ext4: {argv[0]} must work ({run.stderr})")
                pytest.skip(f"making a directory {how} needs root and {argv[0]}: {run.stderr.strip()}")
            done += 1
        yield
    finally:
        if done:
            for argv in undo:
                subprocess.run([a.format(directory) for a in argv], check=True)


@pytest.mark.parametrize("how", _UNWRITABLE)
def test_a_directory_sqlite_cannot_create_its_wal_in_is_named(
    tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "store"
    directory.mkdir()
    url = f"sqlite://{directory / 'domdata.db'}"
    with domdata.open(url) as ctx:
        dom = ctx.managed.create()
        ctx.store(dom.domid, "xl", b"the config")
    # Closed: SQLite removed domdata.db-wal and -shm, and must create them again.
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    assert sorted(before) == ["domdata.db", "domdata.db-locks"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("HOME", str(elsewhere))
    monkeypatch.setenv("XDG_STATE_HOME", str(elsewhere))
    with _unwritable(directory, how):
        with pytest.raises(domdata.StoreUnavailable) as caught:
            domdata.open(url)
        assert {p.name: p.read_bytes() for p in directory.iterdir()} == before
    message = str(caught.value)
    assert message.startswith(f"store {url}: ")
    assert f"the directory {directory} is not writable" in message
    assert "domdata.db-wal" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "store"]
    assert list(elsewhere.iterdir()) == []
    with domdata.open(url) as again:
        assert again.retrieve(dom.domid, "xl") == b"the config"


def test_a_newer_schema_is_refused_not_downgraded(tmp_path: Path) -> None:
    path = tmp_path / "domdata.db"
    with domdata.open(f"sqlite://{path}"):
        pass
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(domdata.StoreUnavailable, match="schema version 99"):
        domdata.open(f"sqlite://{path}")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 99


@pytest.mark.parametrize("url", ["sqlite://host/path.db", "sqlite://", "nosuchscheme:///x"])
def test_malformed_urls_are_store_unavailable(url: str) -> None:
    with pytest.raises(domdata.StoreUnavailable) as caught:
        domdata.open(url)
    assert url in str(caught.value)


def test_a_relative_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel").mkdir()  # domdata creates no directory but the default one
    with domdata.open("sqlite:rel/domdata.db") as ctx:
        ctx.managed.create()
    assert (tmp_path / "rel" / "domdata.db").exists()


_STORES = """
import sys, domdata
with domdata.open(sys.argv[1], durable=sys.argv[2] == "durable") as ctx:
    dom = ctx.managed.create()
    for n in range(20):
        ctx.store(dom.domid, "xl", b"config %d" % n)
"""


def _syncs(url: str, durability: str) -> int:
    """How many fsync/fdatasync calls 20 stores make, counted by strace."""
    done = subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-c",
            "-U",
            "calls,syscall",
            "-e",
            "trace=fsync,fdatasync",
            sys.executable,
            "-c",
            _STORES,
            url,
            durability,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return sum(
        int(line.split()[0])
        for line in done.stderr.splitlines()
        if line.split()[-1:] in (["fsync"], ["fdatasync"])
    )


def test_a_durable_store_syncs_every_commit_and_a_non_durable_one_does_not(tmp_path: Path) -> None:
    if shutil.which("strace") is None:
        if os.environ.get("CI"):
            raise AssertionError("strace is missing (scripts/test.sh installs it)")
        pytest.skip("strace is not installed")
    durable = _syncs(f"sqlite://{tmp_path / 'durable.db'}", "durable")
    fast = _syncs(f"sqlite://{tmp_path / 'fast.db'}", "not-durable")
    # Opening and creating a domain sync a few times either way; each of the
    # 20 commits syncs the WAL only when durable.
    assert durable >= 20, durable
    assert durable - fast >= 15, (durable, fast)
    with sqlite3.connect(tmp_path / "fast.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_store_is_indexed_by_domain(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with domdata.open(f"sqlite://{path}") as ctx:
        ctx.managed.create()
    with sqlite3.connect(path) as db:
        for query, params in [
            ("SELECT data FROM userdata WHERE domid = ? AND uuid = ? AND userid = ?", (1, "u", "xl")),
            ("DELETE FROM userdata WHERE domid = ? AND uuid = ?", (1, "u")),
            # Following a boot (a domain source whose domains die with the host).
            (
                "SELECT data FROM userdata WHERE domid = ? AND uuid = ? AND userid = ?"
                " AND (boot IS NULL OR boot = ?)",
                (1, "u", "xl", "b"),
            ),
            ("DELETE FROM userdata WHERE domid = ? AND uuid = ? AND boot <> ?", (1, "u", "b")),
            ("SELECT uuid FROM domains WHERE name = ?", ("web1",)),
        ]:
            plan = " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {query}", params))
            assert "USING" in plan, f"{query}: {plan}"
            assert "SCAN" not in plan, f"{query}: {plan}"
