"""``sqlite:///path``: the embedded default. One file, WAL, indexed by domain.

Every write is one statement or one ``Database.transact()`` block (BEGIN
IMMEDIATE, commit, rollback on error), retried while another writer holds
SQLite's lock. The managed calls find the domain inside the statement that
acts on its item (``OneStepTable``), under the domain's range lock.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time

from .._changes import ChangeFeed
from .._errors import DomainExists, InvalidURL, LockTimeout, StoreUnavailable
from .._types import Domain, Item
from ._handoff import HandsOff
from ._ofdlock import RangeLocks
from ._url import local_path
from .base import NO_DOMAIN, Holdings, OneStepTable, StoreDescription
from .sqlite_changes import SCHEMA_CHANGES, SQLiteFeed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Sequence
    from typing import NoReturn, TypeVar

    from .._boot import Boot
    from .._changes import Change, Listing, Removal
    from .._types import Incarnation
    from ._handoff import AdoptedLock, HandedLock
    from .base import HeldLock, NoDomain, StoreOptions

    T = TypeVar("T")

# Each entry is one migration; its version (``PRAGMA user_version``) is its
# position + 1. Never edit an entry once released: append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the managed domains and the items.
    (
        """CREATE TABLE IF NOT EXISTS domains (
            domid INTEGER PRIMARY KEY CHECK (domid BETWEEN 0 AND 4294967295),
            uuid TEXT NOT NULL,
            name TEXT UNIQUE)""",
        "CREATE INDEX IF NOT EXISTS domains_uuid ON domains (uuid)",
        """CREATE TABLE IF NOT EXISTS userdata (
            domid INTEGER NOT NULL,
            uuid TEXT NOT NULL,
            userid TEXT NOT NULL,
            data BLOB NOT NULL,
            UNIQUE (domid, uuid, userid))""",
    ),
    # 2: what the store records about itself (the source that governs it).
    ("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",),
    # 3: the change feed (sqlite_changes.py).
    SCHEMA_CHANGES,
    # 4: the boot of the host an item was written in (its boot id), for domains
    # that die with the host; NULL: no boot (managed domains, older items).
    # Not indexed: an index on it cost each write of such an item ~60 us
    # (measured, not durable), while reap scans for it in ~70 ms per 100,000 items.
    ("ALTER TABLE userdata ADD COLUMN boot TEXT",),
)
SCHEMA_VERSION = len(MIGRATIONS)
_UPSERT = (
    "INSERT INTO userdata (domid, uuid, userid, data, boot) VALUES (?1, ?2, ?3, ?4, ?5)"
    " ON CONFLICT (domid, uuid, userid) DO UPDATE SET data = excluded.data, boot = excluded.boot"
)
# The managed fast path: the domain's row gives the uuid, or there is no domain
# (a NULL uuid, a row ignored: nothing written). Not INSERT ... SELECT: into a
# table with triggers, that fills a temporary table at every call.
_UPSERT_BY_DOMID = (
    "INSERT OR IGNORE INTO userdata (domid, uuid, userid, data)"
    " VALUES (?1, (SELECT uuid FROM domains WHERE domid = ?1), ?2, ?3)"
    " ON CONFLICT (domid, uuid, userid) DO UPDATE SET data = excluded.data, boot = NULL"
)
_SELECT_BY_DOMID = (
    "SELECT u.data FROM domains d LEFT JOIN userdata u"
    " ON u.domid = d.domid AND u.uuid = d.uuid AND u.userid = ?2 WHERE d.domid = ?1"
)
_DELETE_BY_DOMID = (
    "DELETE FROM userdata WHERE domid = ?1 AND userid = ?2"
    " AND uuid = (SELECT uuid FROM domains WHERE domid = ?1)"
)
_SELECT = "SELECT data FROM userdata WHERE domid = ? AND uuid = ? AND userid = ?"
_DELETE = "DELETE FROM userdata WHERE domid = ? AND uuid = ? AND userid = ?"
_ITEMS = "SELECT userid, length(data) FROM userdata WHERE domid = ? AND uuid = ?"
# Following a boot, an item of an earlier one is absent (NULL: the item has no boot).
_IN_BOOT = " AND (boot IS NULL OR boot = ?)"
_EARLIER_BOOT = "SELECT domid, uuid, userid, length(data) FROM userdata WHERE boot <> ?"
_DROP_EARLIER_BOOT = "DELETE FROM userdata WHERE domid = ? AND uuid = ? AND boot <> ?"
_DROP = "DELETE FROM userdata WHERE domid = ? AND uuid = ?"
_DOMAIN = "SELECT domid, uuid, name FROM domains"
# The lowest free domid >= 1: 1 itself, or the first domid after a taken one.
_FREE_DOMID = (
    "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM domains WHERE domid = 1)"
    " UNION ALL SELECT d.domid + 1 FROM domains d WHERE d.domid >= 1"
    " AND NOT EXISTS (SELECT 1 FROM domains e WHERE e.domid = d.domid + 1) LIMIT 1"
)
#: How long one statement waits for another writer (SQLite's busy handler), at most.
BUSY_TIMEOUT = 5.0
#: A new database file: only its owner may read it (-wal and -shm take its mode).
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def path_of(url: str) -> str:
    """``sqlite:///abs/path`` -> ``/abs/path``; ``sqlite:rel/path`` -> ``rel/path``."""
    path = local_path(url, "sqlite:///absolute/path or sqlite:relative/path")
    # The file's name as pathlib gives it (without importing pathlib): "." and empty parts dropped.
    name = next((part for part in reversed(path.split("/")) if part not in ("", ".")), "")
    if path.endswith("/") or name in (":memory:", "", ".", ".."):
        raise InvalidURL("a SQLite store is a file: name it (an in-memory database keeps nothing)", store=url)
    return path


def _refuse_unless_regular(path: str, url: str) -> None:
    """StoreUnavailable unless *path* (followed, as SQLite follows it) is a
    regular file: SQLite would open a device, a FIFO or a directory, fail,
    and leave a ``-journal`` beside it."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise StoreUnavailable(f"cannot open {path}: {exc.strerror}", store=url) from exc
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a file")
        raise StoreUnavailable(
            f"{path} is not a regular file ({kind}): a SQLite store is a database file", store=url
        )


_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}


def _busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _unopenable(exc: sqlite3.Error, path: str) -> str | None:
    """Why SQLite cannot open the WAL database *path* (*exc* is its "unable to
    open database file"), when the cause is its directory: SQLite creates
    ``<db>-wal`` and ``<db>-shm`` beside it when the first connection opens."""
    if getattr(exc, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_CANTOPEN:
        return None
    parent = os.path.dirname(path) or "."
    if os.access(parent, os.W_OK, effective_ids=os.access in os.supports_effective_ids):
        return None
    missing = [os.path.basename(path) + end for end in ("-wal", "-shm") if not os.path.exists(path + end)]
    if not missing:
        return None
    return f"the directory {parent} is not writable (SQLite needs to create {' and '.join(missing)} there)"


def _domain(row: tuple[int, str, str | None] | None) -> Domain | None:
    return None if row is None else Domain(*row)


class Database:
    """The connection of one store, with the ways it is used: a read that
    fails as StoreUnavailable, a write retried while another writer is busy,
    and a transaction."""

    def __init__(self, path: str, url: str, lock_timeout: float) -> None:
        self.url = url
        self.path = path
        #: How long a write waits for another writer before LockTimeout.
        self.lock_timeout = lock_timeout
        parent = os.path.dirname(path) or "."
        if not os.path.isdir(parent):
            raise StoreUnavailable(f"the directory {parent} does not exist (domdata creates none)", store=url)
        try:
            os.close(os.open(path, _NEW_FILE, 0o600))
        except FileExistsError:
            _refuse_unless_regular(path, url)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create {path}: {exc.strerror}", store=url) from exc
        try:
            self.connection = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=min(BUSY_TIMEOUT, lock_timeout)
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open {path}: {exc}", store=url) from exc

    def fail(self, exc: sqlite3.Error, domain: object = None, userid: str | None = None) -> NoReturn:
        if _busy(exc):
            raise LockTimeout(
                f"another writer has held the database for {self.lock_timeout:g} s",
                store=self.url,
                domain=domain,
                userid=userid,
            ) from exc
        why = _unopenable(exc, self.path)
        if why is not None:
            raise StoreUnavailable(
                f"cannot open {self.path}: {why}", store=self.url, domain=domain, userid=userid
            ) from exc
        raise StoreUnavailable(f"SQLite: {exc}", store=self.url, domain=domain, userid=userid) from exc

    def query(self, sql: str, params: Sequence[object] = (), domain: object = None) -> sqlite3.Cursor:
        """Run a read; errors become StoreUnavailable naming *domain*."""
        try:
            return self.connection.execute(sql, params)
        except sqlite3.Error as exc:
            self.fail(exc, domain)

    def retry(
        self,
        call: Callable[[], T],
        domain: object = None,
        userid: str | None = None,
        since: float | None = None,
    ) -> T:
        """Run *call*, again while SQLite says another connection is busy, until
        the lock timeout has passed since *since* (a monotonic time; now if None)."""
        deadline = (time.monotonic() if since is None else since) + self.lock_timeout
        while True:
            try:
                return call()
            except sqlite3.Error as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    self.fail(exc, domain, userid)
            time.sleep(0.001)

    def write(
        self, sql: str, params: Sequence[object], domain: object = None, userid: str | None = None
    ) -> int:
        """One write statement, retried while busy; how many rows it changed."""
        # Tried once before any retry machinery: this is every store's path.
        since = time.monotonic()
        db = self.connection
        try:
            return db.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            if not _busy(exc):
                self.fail(exc, domain, userid)
        return self.retry(lambda: db.execute(sql, params), domain, userid, since).rowcount

    def transact(self) -> _Transaction:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error; SQLite's
        errors inside become domdata's: ``with db.transact() as connection``."""
        return _Transaction(self)

    def setup(self, durable: bool) -> None:
        """Refuse a database that is not domdata's (or is of a newer domdata)
        before changing anything in it; then WAL, the durability asked for, and
        the migrations the schema lacks, applied in one transaction."""
        db = self.connection
        version = self.query("PRAGMA user_version").fetchone()[0]
        self._refuse(version)
        self.retry(lambda: db.execute("PRAGMA journal_mode = WAL"))
        db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
        if version == SCHEMA_VERSION:
            return
        with self.transact():
            version = db.execute("PRAGMA user_version").fetchone()[0]
            self._refuse(version)
            for migration in MIGRATIONS[version:]:
                for statement in migration:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _refuse(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"schema version {version} is newer than this domdata knows ({SCHEMA_VERSION}):"
                " upgrade domdata; nothing was changed",
                store=self.url,
            )
        if version == 0:
            found = self.query("SELECT name FROM sqlite_master WHERE type = 'table' LIMIT 3")
            tables = [row[0] for row in found]
            if tables:
                raise StoreUnavailable(
                    f"not a domdata database (it has tables {', '.join(tables)}): nothing was changed",
                    store=self.url,
                )

    def close(self) -> None:
        self.connection.close()


class _Transaction:
    """``Database.transact()``. A class, not a generator: a single-item
    command imports no contextlib (issue 12)."""

    __slots__ = ("_db",)

    def __init__(self, db: Database) -> None:
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        connection = self._db.connection
        self._db.retry(lambda: connection.execute("BEGIN IMMEDIATE"))
        return connection

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        connection = self._db.connection
        if exc is not None:
            connection.rollback()
            if isinstance(exc, sqlite3.Error):
                self._db.fail(exc)
            return
        try:
            self._db.retry(lambda: connection.execute("COMMIT"))
        except BaseException:
            connection.rollback()
            raise


class SQLiteStore(HandsOff, ChangeFeed):
    """Items and managed domains in one SQLite database; locks in ``<db>-locks``."""

    def __init__(self, url: str, options: StoreOptions) -> None:
        self.url = url
        path = path_of(url)
        self._db = Database(path, url, options.lock_timeout)
        self._feed = SQLiteFeed(self._db, path)
        try:
            self._db.setup(options.durable)
            if options.retention is not None:
                self._feed.set_retention(options.retention)
        except BaseException:
            self._db.close()
            raise
        try:
            self._locks = RangeLocks(path + "-locks", url)
        except OSError as exc:
            self._db.close()
            raise StoreUnavailable(
                f"cannot open the lock file {path}-locks: {exc.strerror}", store=url
            ) from exc
        self._domains = _SQLiteDomains(self._db, self._locks, self._feed)
        # The boot followed (None: items have no boot), and the reads that see only its items.
        self._boot: str | None = None
        self._in_boot: tuple[object, ...] = ()
        self._select, self._delete, self._items = _SELECT, _DELETE, _ITEMS

    def follow_boot(self, boot: Boot) -> None:
        self._boot = boot.id
        self._in_boot = (boot.id,)
        self._select, self._delete, self._items = (q + _IN_BOOT for q in (_SELECT, _DELETE, _ITEMS))

    def earlier_boot(self) -> Sequence[Item]:
        if self._boot is None:
            return []
        rows = self._db.query(_EARLIER_BOOT, self._in_boot).fetchall()
        return [Item(*row) for row in sorted(rows)]

    def drop_earlier_boot(self, incarnations: Collection[Incarnation]) -> int:
        if self._boot is None or not incarnations:
            return 0
        with self._db.transact() as db, self._feed.recorded_as(db, "reap"):
            return db.executemany(_DROP_EARLIER_BOOT, [(*i, self._boot) for i in incarnations]).rowcount

    def lock(self, domid: int, uuid: str | None, timeout: float) -> HeldLock:
        return self._locks.lock(domid, timeout)

    def hand_off(self, domid: int, uuid: str | None, timeout: float) -> HandedLock:
        return self._locks.hand_off(domid, timeout)

    def adopt(self, fd: int, incarnation: Incarnation) -> AdoptedLock | None:
        return self._locks.adopt(fd, incarnation.domid)

    def get(self, incarnation: Incarnation, userid: str) -> bytes | None:
        row = self._db.query(self._select, (*incarnation, userid, *self._in_boot), incarnation).fetchone()
        if row is None:
            return None
        data: bytes = row[0]
        return data

    def put(self, incarnation: Incarnation, userid: str, data: bytes) -> None:
        self._db.write(_UPSERT, (*incarnation, userid, data, self._boot), incarnation, userid)

    def delete(self, incarnation: Incarnation, userid: str) -> bool:
        params = (*incarnation, userid, *self._in_boot)
        return self._db.write(self._delete, params, incarnation, userid) > 0

    def items(self, incarnation: Incarnation | None) -> Sequence[Item]:
        if incarnation is None:
            rows = self._db.query(
                "SELECT domid, uuid, userid, length(data) FROM userdata ORDER BY domid, uuid, userid"
            ).fetchall()
            return [Item(*row) for row in rows]
        rows = self._db.query(
            self._items + " ORDER BY userid", (*incarnation, *self._in_boot), incarnation
        ).fetchall()
        return [Item(incarnation.domid, incarnation.uuid, userid, size) for userid, size in rows]

    def drop(self, incarnations: Collection[Incarnation], op: Removal) -> int:
        if not incarnations:
            return 0
        with self._db.transact() as db, self._feed.recorded_as(db, op):
            # rowcount, unlike total_changes, leaves out the triggers' rows.
            return db.executemany(_DROP, incarnations).rowcount

    def incarnations(self) -> set[tuple[int, str]]:
        # Plain row tuples: a reap of many incarnations builds named tuples only for the dead.
        return set(self._db.query("SELECT DISTINCT domid, uuid FROM userdata").fetchall())

    def domain_table(self) -> OneStepTable:
        return self._domains

    def changes(self, domid: int | None, since: int | None, follow: bool) -> Iterator[Change]:
        return self._feed.changes(domid, since, follow)

    def listing(self, incarnation: Incarnation | None, all_hosts: bool) -> Listing:
        return self._feed.listing(lambda: self.items(incarnation), incarnation)

    def bound_source(self) -> str | None:
        row = self._db.query("SELECT value FROM meta WHERE key = 'source'").fetchone()
        return None if row is None else str(row[0])

    def bind_source(self, spec: str) -> None:
        self._db.write("INSERT OR REPLACE INTO meta (key, value) VALUES ('source', ?)", (spec,))

    def holdings(self) -> Holdings:
        query = "SELECT EXISTS (SELECT 1 FROM userdata), EXISTS (SELECT 1 FROM domains)"
        items, domains = self._db.query(query).fetchone()
        return Holdings(bool(items), bool(domains))

    def describe(self) -> StoreDescription:
        version: int = self._db.query("PRAGMA user_version").fetchone()[0]
        return StoreDescription(path_of(self.url), version)

    def close(self) -> None:
        self._feed.close()
        try:
            self._db.close()
        finally:
            self._locks.close()


class _SQLiteDomains(OneStepTable):
    """The ``domains`` table; the one-step calls lock the domid's range, then
    run one statement that finds the domain and acts on its item."""

    def __init__(self, db: Database, locks: RangeLocks, feed: SQLiteFeed) -> None:
        self._db = db
        self._locks = locks
        self._feed = feed

    def add(self, domid: int | None, uuid: str, name: str | None) -> Domain:
        url = self._db.url
        with self._db.transact() as db:
            if domid is None:
                domid = db.execute(_FREE_DOMID).fetchone()[0]
            elif db.execute("SELECT 1 FROM domains WHERE domid = ?", (domid,)).fetchone():
                raise DomainExists("a domain with this domid exists", store=url, domain=domid)
            if name is not None:
                named = db.execute("SELECT domid FROM domains WHERE name = ?", (name,)).fetchone()
                if named is not None:
                    # The domain that has the name, not the domid this one would have had.
                    raise DomainExists(f"a domain named {name!r} exists", store=url, domain=named[0])
            db.execute("INSERT INTO domains (domid, uuid, name) VALUES (?, ?, ?)", (domid, uuid, name))
        assert domid is not None
        return Domain(domid, uuid, name)

    def remove(self, incarnation: Incarnation) -> int:
        with self._db.transact() as db, self._feed.recorded_as(db, "destroy"):
            db.execute("DELETE FROM domains WHERE domid = ? AND uuid = ?", incarnation)
            return db.execute(_DROP, incarnation).rowcount

    def get(self, domid: int) -> Domain | None:
        return _domain(self._db.query(_DOMAIN + " WHERE domid = ?", (domid,), domid).fetchone())

    def with_uuid(self, uuid: str) -> Sequence[Domain]:
        return [Domain(*row) for row in self._db.query(_DOMAIN + " WHERE uuid = ? ORDER BY domid", (uuid,))]

    def with_name(self, name: str) -> Domain | None:
        return _domain(self._db.query(_DOMAIN + " WHERE name = ?", (name,)).fetchone())

    def all(self) -> Sequence[Domain]:
        return [Domain(*row) for row in self._db.query(_DOMAIN + " ORDER BY domid")]

    def get_item(self, domid: int, userid: str, timeout: float) -> bytes | NoDomain | None:
        lock = self._locks.lock(domid, timeout)
        try:
            row = self._db.query(_SELECT_BY_DOMID, (domid, userid), domid).fetchone()
        finally:
            lock.release()
        return NO_DOMAIN if row is None else row[0]

    def put_item(self, domid: int, userid: str, data: bytes, timeout: float) -> NoDomain | None:
        lock = self._locks.lock(domid, timeout)
        try:
            written = self._db.write(_UPSERT_BY_DOMID, (domid, userid, data), domid, userid)
        finally:
            lock.release()
        return None if written else NO_DOMAIN

    def delete_item(self, domid: int, userid: str, timeout: float) -> bool | NoDomain:
        lock = self._locks.lock(domid, timeout)
        try:
            if self._db.write(_DELETE_BY_DOMID, (domid, userid), domid, userid):
                return True
            # Nothing deleted: say whether that is because there is no domain.
            exists = self._db.query("SELECT 1 FROM domains WHERE domid = ?", (domid,), domid).fetchone()
            return False if exists else NO_DOMAIN
        finally:
            lock.release()
