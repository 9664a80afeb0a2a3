"""What only the SQLite store has: its file, its pragmas, a full disk."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
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
    with domdata.open("sqlite:rel/domdata.db") as ctx:
        ctx.managed.create()
    assert (tmp_path / "rel" / "domdata.db").exists()


@pytest.mark.parametrize(("durable", "synchronous"), [(True, 2), (False, 1)])
def test_durability_is_the_synchronous_pragma(tmp_path: Path, durable: bool, synchronous: int) -> None:
    with domdata.open(f"sqlite://{tmp_path / 'd.db'}", durable=durable) as ctx:
        db: sqlite3.Connection = ctx._store._db  # type: ignore[attr-defined]
        assert db.execute("PRAGMA synchronous").fetchone()[0] == synchronous
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_store_is_indexed_by_domain(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with domdata.open(f"sqlite://{path}") as ctx:
        ctx.managed.create()
    with sqlite3.connect(path) as db:
        for query, params in [
            ("SELECT data FROM userdata WHERE domid = ? AND uuid = ? AND userid = ?", (1, "u", "xl")),
            ("DELETE FROM userdata WHERE domid = ? AND uuid = ?", (1, "u")),
            ("SELECT uuid FROM domains WHERE name = ?", ("web1",)),
        ]:
            plan = " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {query}", params))
            assert "USING" in plan, f"{query}: {plan}"
            assert "SCAN" not in plan, f"{query}: {plan}"
