"""What one write costs the SQLite store, counted, never timed: the pages it
puts in the WAL, the work of the feed's triggers, the modules it imports."""

from __future__ import annotations

import ast
import fcntl
import importlib.util
import itertools
import os
import sqlite3
import struct
import sys
from pathlib import Path

import pytest

import domdata
from domdata import ChangesLost, Retention
from domdata.stores import _ofdlock, _wait, sqlite, sqlite_changes
from domdata.stores.sqlite_changes import TRIM_BATCH, TRIM_EVERY

#: A WAL frame: its 24-byte header and one page.
FRAME_HEADER = 24


def _wal_size(path: Path) -> int:
    return os.path.getsize(f"{path}-wal")


def test_a_store_puts_two_pages_in_the_wal_its_item_and_its_change(tmp_path: Path) -> None:
    """Any page more per write (an AUTOINCREMENT counter, an index on the
    feed, a bookkeeping row) is a WAL frame more for every durable store."""
    path = tmp_path / "d.db"
    with domdata.open(f"sqlite://{path}") as ctx:
        dom = ctx.managed.create()
        ctx.store(dom.domid, "xl", b"first")
        with sqlite3.connect(path) as db:
            page: int = db.execute("PRAGMA page_size").fetchone()[0]
        db.close()
        before = _wal_size(path)
        payloads = [os.urandom(1024), os.urandom(1024)]
        for n in range(20):
            ctx.store(dom.domid, "xl", payloads[n % 2])
        assert _wal_size(path) - before == 20 * 2 * (page + FRAME_HEADER)


def _steps(db: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> int:
    """How many virtual machine instructions SQLite runs for *sql*."""
    count = 0

    def step() -> int:
        nonlocal count
        count += 1
        return 0

    db.set_progress_handler(step, 1)
    try:
        db.execute(sql, params)
    finally:
        db.set_progress_handler(None, 1)
    return count


def _schema(path: Path, retention: Retention) -> sqlite3.Connection:
    with domdata.open(f"sqlite://{path}", changes_retention=retention) as ctx:
        ctx.managed.create(domid=1, uuid=_UUID)
    return sqlite3.connect(path, isolation_level=None)


_UUID = "6f1d5bd8-0b6f-4c49-9d32-6d2f6b7b0e5a"
_ITEM = f"INSERT INTO userdata (domid, uuid, userid, data) VALUES (1, '{_UUID}', ?, x'00')"


def _fill(db: sqlite3.Connection, count: int, first: int = 0) -> None:
    db.execute("BEGIN")
    db.executemany(_ITEM, ((f"u{n}",) for n in range(first, first + count)))
    db.execute("COMMIT")


def _age(db: sqlite3.Connection, days: float) -> None:
    """Make every change recorded so far *days* old."""
    db.execute("UPDATE changes SET at = at - ?", (days * 86400,))


_STATEMENTS = ("INSERT", "DELETE", "SELECT")


def _program(db: sqlite3.Connection, sql: str) -> list[str]:
    """The opcodes SQLite runs for *sql*, its triggers' included."""
    for count in range(8):
        try:
            return [row[1] for row in db.execute(f"EXPLAIN {sql}", (None,) * count)]
        except sqlite3.ProgrammingError:  # not that many parameters
            continue
    raise AssertionError(f"cannot bind {sql}")


def test_no_statement_of_the_store_builds_a_table_per_call(tmp_path: Path) -> None:
    """A write and its triggers run no per-call set-up: an INSERT ... SELECT
    into a table with triggers, or a CHECK with an IN list of five ops, built
    a temporary table at every write."""
    db = _schema(tmp_path / "d.db", Retention())
    statements = [
        value
        for name, value in vars(sqlite).items()
        if name.startswith("_") and isinstance(value, str) and value.startswith(_STATEMENTS)
    ]
    assert len(statements) >= 10
    for sql in statements:
        program = _program(db, sql)
        if sql.startswith("INSERT"):
            assert "Program" in program, sql  # the feed's trigger is in the plan
        assert "OpenEphemeral" not in program, sql
    db.close()


def test_the_trim_reads_only_what_it_deletes(tmp_path: Path) -> None:
    """10,000 old changes kept by the count limit: the write that trims
    reads no more of them than one that does not."""
    db = _schema(tmp_path / "d.db", Retention(changes=20_000, seconds=60))
    _fill(db, 10_000)
    _age(db, 2)
    newest = db.execute("SELECT max(rev) FROM changes").fetchone()[0]
    _fill(db, TRIM_EVERY - 1 - newest % TRIM_EVERY, first=10_000)  # the next change trims
    trimming = _steps(db, _ITEM, ("trims",))
    plain = _steps(db, _ITEM, ("plain",))
    assert db.execute("SELECT count(*) FROM changes").fetchone()[0] >= 10_002
    assert trimming < plain + 200, (trimming, plain)
    db.close()


def test_a_trim_deletes_a_bounded_batch_and_catches_up(tmp_path: Path) -> None:
    """A backlog of old changes (retention lowered, or a store idle for days)
    is trimmed a batch at a time, never all at once by one write."""
    path = tmp_path / "d.db"
    db = _schema(path, Retention())
    _fill(db, 5_000)
    _age(db, 2)
    db.close()
    retention = Retention(changes=1, seconds=60)
    with domdata.open(f"sqlite://{path}", changes_retention=retention, durable=False) as ctx:
        oldest = [_oldest(ctx)]
        for n in range(TRIM_EVERY * 8):
            ctx.store(1, "xl", str(n).encode())
            if n % (TRIM_EVERY // 4) == 0 and _oldest(ctx) != oldest[-1]:
                oldest.append(_oldest(ctx))
        batches = [b - a for a, b in itertools.pairwise(oldest)]
        assert len(batches) > 1
        assert max(batches) <= TRIM_BATCH, batches
        # Caught up: only the changes younger than a minute are left.
        assert _oldest(ctx) > 5_000


def _oldest(ctx: domdata.Context) -> int:
    """The oldest revision the store still has (none trimmed yet: 1)."""
    try:
        ctx.changes(since=0)
    except ChangesLost as lost:
        return lost.oldest
    return 1


@pytest.mark.parametrize("op", ["bogus", "store", "delete"])
def test_a_removal_records_only_a_removal_op(tmp_path: Path, op: str) -> None:
    db = _schema(tmp_path / "d.db", Retention())
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        db.execute("INSERT INTO change_cause (id, op) VALUES (1, ?)", (op,))
    db.close()


@pytest.mark.parametrize("module", [sqlite, sqlite_changes, _ofdlock, _wait])
def test_a_single_item_command_imports_no_typing_for_the_sqlite_store(module: object) -> None:
    """typing costs a command ~11 ms: the SQLite store imports it only for the type checker."""
    tree = ast.parse(Path(str(getattr(module, "__file__", ""))).read_text())
    for_the_checker = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    imported = [
        name
        for node in ast.walk(tree)
        if id(node) not in for_the_checker
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
    ]
    assert "os" in imported or "time" in imported or "struct" in imported  # the walk sees imports
    assert "typing" not in imported


@pytest.mark.parametrize("kind", [fcntl.F_RDLCK, fcntl.F_WRLCK, fcntl.F_UNLCK])
@pytest.mark.parametrize("domid", [0, 1, 255, 256, 0x7FEF, 2**31, 2**32 - 1])
def test_the_range_lock_request_is_struct_flock(kind: int, domid: int) -> None:
    """The lock request, packed by hand (no struct import), is what struct packs."""
    assert _ofdlock.flock_request(kind, domid) == struct.pack("hhxxxxqqixxxx", kind, os.SEEK_SET, domid, 1, 0)


@pytest.mark.parametrize("order", ["little", "big"])
def test_the_range_lock_request_is_struct_flock_in_either_byte_order(
    monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    """A copy of the module loaded as on a machine of that byte order packs as struct does there."""
    monkeypatch.setattr(sys, "byteorder", order)
    spec = importlib.util.spec_from_file_location("ofdlock_copy", _ofdlock.__file__)
    assert spec is not None
    assert spec.loader is not None
    copy = importlib.util.module_from_spec(spec)
    monkeypatch.setattr(copy, "__package__", "domdata.stores")
    spec.loader.exec_module(copy)
    mark = "<" if order == "little" else ">"
    for kind, domid in [(fcntl.F_WRLCK, 0), (fcntl.F_UNLCK, 7), (fcntl.F_RDLCK, 2**32 - 1)]:
        packed = struct.pack(mark + "hhxxxxqqixxxx", kind, os.SEEK_SET, domid, 1, 0)
        assert copy.flock_request(kind, domid) == packed
