"""The change feed of the SQLite store.

Recording: triggers on ``userdata`` insert one row into ``changes`` inside the
statement that writes the item, so every write path (the managed one-statement
calls, ``put``/``delete``, ``drop``, even a hand-run sqlite3 shell) records its
change in its own transaction and keeps its single statement. A removal that
is not an ``unlink`` (``destroy``, ``reap``, the watch daemon) runs inside a
transaction that first writes its op into the one-row table ``change_cause``,
which the delete trigger reads; it is removed before the commit, so no other
connection ever sees it. Revisions are the ``INTEGER PRIMARY KEY`` (the
rowid, max + 1): SQLite has one writer at a time, so they grow in commit
order; trimming never removes the newest change (``Retention.changes`` >= 1),
so none is ever reused. Not AUTOINCREMENT: its ``sqlite_sequence`` row is one
more page written per commit (3 WAL frames a write instead of 2), which the
durable ``store`` benchmark sees (tests/sqlite/test_write_path.py counts them).

Trimming: every 256th revision, the insert trigger deletes the changes that
are both older than the retention age and beyond the retention count (a range
at the start of the table), at most 1,024 of them, so no write pays for a
backlog (an idle store, a retention lowered): it is caught up with a batch at
a time. The trim reads the changes it deletes and one more, never the ones
kept by count. At a steady rate, a trim deletes about 256 changes and puts
about 9 pages more in the WAL, on one write in 256 (which write over 512
pages in all): the median durable write does not see it. Trimming more often,
in smaller batches, writes more pages in all (measured, every 64th: about 6
pages more each, 24 in 256 writes).

Following: a follower reads new rows on its own connection and, in between,
sleeps on inotify for the database's directory (the ``-wal`` file is written at
every commit). The event comes when the commit's frames are written, before
SQLite publishes the commit (after its fsync), so after each event the
follower re-reads a few times with a growing delay until the directory has
been quiet for a moment. Idle, it sleeps in poll(2), re-reading every
``_SAFETY`` seconds in case the file system delivers no events (NFS). Closing
the store wakes it: it closes its connection and raises StoreUnavailable
(``_closing``).
"""

from __future__ import annotations

import os
import sqlite3
import time

from .._changes import Change, Listing, Retention, changes_lost
from .._errors import StoreUnavailable
from ._closing import Closing

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any

    from .._changes import Removal
    from .._types import Item
    from .sqlite import Database

_NOW = "(julianday('now') - 2440587.5) * 86400.0"
_RECORD = "INSERT INTO changes (at, op, domid, uuid, userid, size) VALUES (" + _NOW + ", {op}, {row}.domid,"
#: Every this many revisions, the insert trigger trims ...
TRIM_EVERY = 256
#: ... at most this many changes (4 times what TRIM_EVERY writes add: a backlog
#: is caught up with, a batch at a time).
TRIM_BATCH = 1024
# The oldest change kept by count, and the end of this trim's batch.
_BY_COUNT = "NEW.rev + 1 - (SELECT changes FROM change_retention)"
_BATCH_END = f"min({_BY_COUNT}, (SELECT min(rev) FROM changes) + {TRIM_BATCH})"
#: The schema migration of the feed: the changes, their triggers, their retention.
SCHEMA_CHANGES = (
    # No CHECK on op: its IN list built a temporary table at every change. The
    # triggers write 'store' and 'delete'; other ops come through change_cause.
    """CREATE TABLE changes (
        rev INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        op TEXT NOT NULL,
        domid INTEGER NOT NULL,
        uuid TEXT NOT NULL,
        userid TEXT NOT NULL,
        size INTEGER)""",
    """CREATE TABLE change_cause (
        id INTEGER PRIMARY KEY CHECK (id = 1), op TEXT NOT NULL CHECK (op IN ('destroy', 'reap')))""",
    """CREATE TABLE change_retention (
        id INTEGER PRIMARY KEY CHECK (id = 1), changes INTEGER NOT NULL, seconds REAL NOT NULL)""",
    f"INSERT INTO change_retention VALUES (1, {Retention().changes}, {Retention().seconds})",
    "CREATE TRIGGER userdata_stored AFTER INSERT ON userdata BEGIN "
    + _RECORD.format(op="'store'", row="NEW")
    + " NEW.uuid, NEW.userid, length(NEW.data)); END",
    "CREATE TRIGGER userdata_replaced AFTER UPDATE OF data ON userdata BEGIN "
    + _RECORD.format(op="'store'", row="NEW")
    + " NEW.uuid, NEW.userid, length(NEW.data)); END",
    "CREATE TRIGGER userdata_deleted AFTER DELETE ON userdata BEGIN "
    + _RECORD.format(op="coalesce((SELECT op FROM change_cause), 'delete')", row="OLD")
    + " OLD.uuid, OLD.userid, NULL); END",
    # A change older than both limits goes: the batch (the oldest changes, up
    # to the one kept by count) is deleted up to its first change younger
    # than retention.seconds. Only the batch is read: the changes kept by
    # count are never scanned for their age.
    f"""CREATE TRIGGER changes_trim AFTER INSERT ON changes WHEN NEW.rev % {TRIM_EVERY} = 0 BEGIN
        DELETE FROM changes WHERE rev < coalesce(
            (SELECT rev FROM changes WHERE rev < {_BATCH_END}
                AND at >= NEW.at - (SELECT seconds FROM change_retention) ORDER BY rev LIMIT 1),
            {_BATCH_END});
    END""",
)
_NEWEST = "SELECT coalesce(max(rev), 0) FROM changes"
# Two subqueries: SQLite reads min() or max() from the index end only alone.
_BOUNDS = "SELECT (SELECT min(rev) FROM changes), (" + _NEWEST + ")"
_READ = "SELECT rev, op, domid, uuid, userid, size FROM changes WHERE rev > ? AND rev <= ?"
_BATCH = 1000
#: After an event, re-read until the directory has been quiet this long.
_SETTLE = 0.25
#: The longest delay between re-reads while settling.
_MAX_DELAY = 0.032
#: Idle, re-read this often even without an event.
_SAFETY = 5.0


class _RecordedAs:
    """``SQLiteFeed.recorded_as()``: the cause written on entry, cleared when
    the block succeeds (on an error the transaction is rolled back whole). A
    class, not a generator: a single-item command imports no contextlib."""

    __slots__ = ("_db", "_op")

    def __init__(self, db: sqlite3.Connection, op: Removal) -> None:
        self._db, self._op = db, op

    def __enter__(self) -> None:
        self._db.execute("INSERT INTO change_cause (id, op) VALUES (1, ?)", (self._op,))

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        if exc is None:
            self._db.execute("DELETE FROM change_cause")


class SQLiteFeed:
    """The change feed of one SQLite store: its recording (triggers, and the
    cause of a removal) and its reading (a follower's own connection)."""

    def __init__(self, db: Database, path: str) -> None:
        self._db = db
        self._path = path
        self.url = db.url
        self._closing = Closing(db.url)

    # -- writing -------------------------------------------------------------

    def set_retention(self, retention: Retention) -> None:
        self._db.write(
            "UPDATE change_retention SET changes = ?, seconds = ?", (retention.changes, retention.seconds)
        )

    def recorded_as(self, db: sqlite3.Connection, op: Removal) -> _RecordedAs:
        """Inside a transaction: items deleted in the ``with`` block are changes of *op*."""
        return _RecordedAs(db, op)

    # -- reading -------------------------------------------------------------

    def listing(self, items: Callable[[], Sequence[Item]], domain: object) -> Listing:
        """*items* and the revision they reflect, read in one snapshot."""
        db = self._db.connection
        self._db.query("BEGIN")
        try:
            listed = items()
            rev = self._db.query(_NEWEST, (), domain).fetchone()[0]
        finally:
            db.rollback()
        return Listing(listed, rev)

    def changes(self, domid: int | None, since: int | None, follow: bool) -> Iterator[Change]:
        from .._inotify import IN_CREATE, IN_MODIFY, IN_MOVED_TO, DirectoryWatch

        # The watch exists before the first read: no commit falls in between.
        watch = None
        if follow:
            directory = os.path.dirname(os.path.abspath(self._path))
            watch = DirectoryWatch(directory, IN_MODIFY | IN_CREATE | IN_MOVED_TO, self._closing)
        try:
            reader = _Reader(self._path, self._closing, domid)
        except BaseException:
            if watch is not None:
                watch.close()
            raise
        try:
            last = reader.start(since)
        except BaseException:
            reader.close()
            if watch is not None:
                watch.close()
            raise
        return reader.run(last, watch)

    def close(self) -> None:
        """The store closes: every feed read from it ends."""
        self._closing.close()


class _Reader:
    """One follower's own connection to the database."""

    def __init__(self, path: str, closing: Closing, domid: int | None) -> None:
        self._closing = closing
        self._url = closing.url
        self._names = {os.path.basename(path), os.path.basename(path) + "-wal"}
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite: {exc}", store=self._url) from exc
        self._sql = _READ + ("" if domid is None else " AND domid = ?") + f" ORDER BY rev LIMIT {_BATCH}"
        self._domid: tuple[int, ...] = () if domid is None else (domid,)

    def _read(self, last: int) -> tuple[list[Any], int]:
        """The changes after *last* (a batch) and the revision read up to; ChangesLost
        if *last* is no longer retained."""
        db = self._db
        try:
            db.execute("BEGIN")
            try:
                oldest, newest = db.execute(_BOUNDS).fetchone()
                oldest = newest + 1 if oldest is None else oldest
                if last < oldest - 1 or last > newest:
                    raise changes_lost(self._url, last, oldest, newest)
                rows = db.execute(self._sql, (last, newest, *self._domid)).fetchall()
            finally:
                db.rollback()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite: {exc}", store=self._url) from exc
        # A short batch read everything up to newest (filtered or not).
        return rows, rows[-1][0] if len(rows) == _BATCH else newest

    def start(self, since: int | None) -> int:
        if since is not None:
            self._read(since)
            return since
        try:
            oldest = self._db.execute("SELECT coalesce(min(rev), 1) FROM changes").fetchone()[0]
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite: {exc}", store=self._url) from exc
        return int(oldest) - 1

    def run(self, last: int, watch: Any) -> Iterator[Change]:
        closing = self._closing
        try:
            settle_until, delay = 0.0, 0.001
            while True:
                closing.check()
                rows, upto = self._read(last)
                for rev, op, domid, uuid, userid, size in rows:
                    yield Change(rev, op, None, domid, uuid, userid, size)
                    closing.check()
                advanced, last = upto > last, upto
                if advanced:
                    continue
                if watch is None:
                    return
                if time.monotonic() < settle_until:
                    events = watch.wait(delay)
                    delay = min(delay * 2, _MAX_DELAY)
                else:
                    events = watch.wait(_SAFETY)
                if any(name in self._names or not name for _mask, name in events):
                    settle_until, delay = time.monotonic() + _SETTLE, 0.001
        finally:
            self.close()
            if watch is not None:
                watch.close()

    def close(self) -> None:
        self._db.close()
