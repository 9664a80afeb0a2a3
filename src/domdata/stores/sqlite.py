"""``sqlite:///path``: the embedded default. One file, WAL, indexed by domain.

Every write is one statement or one ``_transact()`` block (BEGIN IMMEDIATE,
commit, rollback on error), retried while another writer holds SQLite's
lock. With the managed source, a write's domain check is part of the same
statement, so it is inside the write's transaction.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, TypeVar
from urllib.parse import unquote, urlsplit

from .._errors import CorruptItem, DomainExists, DomainNotFound, StoreUnavailable
from .._types import Domain, Incarnation, Item
from ._ofdlock import RangeLocks
from .base import DomainTable, HeldLock, ManagedOps, Store, StoreOptions
from .sqlite_changes import SCHEMA_CHANGES, SQLiteChangeFeed

T = TypeVar("T")

# Schema version 1: the items and the managed domains.
_SCHEMA = (
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
)
# Each entry is one migration; its version is its position + 1. Never edit an
# entry once released: append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_SCHEMA, SCHEMA_CHANGES)
SCHEMA_VERSION = len(MIGRATIONS)
_UPSERT = (
    "INSERT INTO userdata (domid, uuid, userid, data) VALUES (?1, ?2, ?3, ?4)"
    " ON CONFLICT (domid, uuid, userid) DO UPDATE SET data = excluded.data"
)
# The managed source's existence check, inside the write's own statement.
_UPSERT_MANAGED = (
    "INSERT INTO userdata (domid, uuid, userid, data)"
    " SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM domains WHERE domid = ?1 AND uuid = ?2)"
    " ON CONFLICT (domid, uuid, userid) DO UPDATE SET data = excluded.data"
)
# The managed fast path: the domain's row gives the uuid, or there is no domain.
_UPSERT_BY_DOMID = (
    "INSERT INTO userdata (domid, uuid, userid, data)"
    " SELECT domid, uuid, ?2, ?3 FROM domains WHERE domid = ?1"
    " ON CONFLICT (domid, uuid, userid) DO UPDATE SET data = excluded.data"
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
_DROP = "DELETE FROM userdata WHERE domid = ? AND uuid = ?"
_DOMAIN = "SELECT domid, uuid, name FROM domains"
# The lowest free domid >= 1: 1 itself, or the first domid after a taken one.
_FREE_DOMID = (
    "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM domains WHERE domid = 1)"
    " UNION ALL SELECT d.domid + 1 FROM domains d WHERE d.domid >= 1"
    " AND NOT EXISTS (SELECT 1 FROM domains e WHERE e.domid = d.domid + 1) LIMIT 1"
)
#: How long one statement waits for another writer (SQLite's busy handler).
BUSY_TIMEOUT_MS = 5000
#: How long a write keeps retrying SQLITE_BUSY before StoreUnavailable.
BUSY_DEADLINE = 60.0


def path_of(url: str) -> str:
    """``sqlite:///abs/path`` -> ``/abs/path``; ``sqlite:rel/path`` -> ``rel/path``."""
    parts = urlsplit(url)
    if parts.netloc or not parts.path:
        raise StoreUnavailable("a SQLite URL is sqlite:///absolute/path or sqlite:relative/path", store=url)
    return unquote(parts.path)


def _busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _domain(row: tuple[int, str, str | None] | None) -> Domain | None:
    return None if row is None else Domain(*row)


class SQLiteStore(SQLiteChangeFeed, Store):
    """Items and managed domains in one SQLite database; locks in ``<db>-locks``."""

    def __init__(self, url: str, options: StoreOptions) -> None:
        self.url = url
        self._path = path = path_of(url)
        try:
            Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open {path}: {exc}", store=url) from exc
        try:
            self._locks = RangeLocks(path + "-locks", url)
        except OSError as exc:
            self._db.close()
            raise StoreUnavailable(f"cannot open the lock file {path}-locks: {exc}", store=url) from exc
        try:
            self._setup(options.durable)
            retention = options.retention
            if retention is not None:
                self._retry(lambda: self.set_retention(retention))
        except BaseException:
            self.close()
            raise
        self._upsert = _UPSERT_MANAGED if options.managed else _UPSERT

    def _setup(self, durable: bool) -> None:
        db = self._db
        self._retry(lambda: db.execute("PRAGMA journal_mode = WAL"))
        db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
        if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        with self._transact():
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"schema version {version} is newer than this domdata knows ({SCHEMA_VERSION})",
                    store=self.url,
                )
            for migration in MIGRATIONS[version:]:
                for statement in migration:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- plumbing ----------------------------------------------------------

    def _fail(self, exc: sqlite3.Error, incarnation: object = None, userid: str | None = None) -> NoReturn:
        raise StoreUnavailable(f"SQLite: {exc}", store=self.url, domain=incarnation, userid=userid) from exc

    def _retry(self, call: Callable[[], T], domain: object = None, userid: str | None = None) -> T:
        """Run *call*, again while SQLite says another connection is busy."""
        deadline = time.monotonic() + BUSY_DEADLINE
        while True:
            try:
                return call()
            except sqlite3.Error as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    self._fail(exc, domain, userid)
            time.sleep(0.001)

    @contextmanager
    def _transact(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        db = self._db
        self._retry(lambda: db.execute("BEGIN IMMEDIATE"))
        try:
            yield db
        except BaseException:
            db.rollback()
            raise
        try:
            self._retry(lambda: db.execute("COMMIT"))
        except BaseException:
            db.rollback()
            raise

    # -- Store -------------------------------------------------------------

    def lock(self, domid: int, uuid: str | None, timeout: float) -> HeldLock:
        return self._locks.lock(domid, timeout)

    def get(self, incarnation: Incarnation, userid: str) -> bytes | None:
        try:
            row = self._db.execute(_SELECT, (incarnation[0], incarnation[1], userid)).fetchone()
        except sqlite3.Error as exc:
            self._fail(exc, incarnation, userid)
        return None if row is None else self._checked(row[0], incarnation, userid)

    def _checked(self, data: bytes | None, domain: object, userid: str) -> bytes | None:
        if data is not None and not data:
            raise CorruptItem("the item is empty", store=self.url, domain=domain, userid=userid)
        return data

    def put(self, incarnation: Incarnation, userid: str, data: bytes) -> None:
        params = (incarnation[0], incarnation[1], userid, data)
        cursor = self._retry(lambda: self._db.execute(self._upsert, params), incarnation, userid)
        if cursor.rowcount == 0:
            raise DomainNotFound("the domain is gone", store=self.url, domain=incarnation, userid=userid)

    def delete(self, incarnation: Incarnation, userid: str) -> bool:
        params = (incarnation[0], incarnation[1], userid)
        return self._retry(lambda: self._db.execute(_DELETE, params), incarnation, userid).rowcount > 0

    def items(self, incarnation: Incarnation | None) -> Sequence[Item]:
        try:
            if incarnation is None:
                rows = self._db.execute(
                    "SELECT domid, uuid, userid, length(data) FROM userdata ORDER BY domid, uuid, userid"
                ).fetchall()
                return [Item(*row) for row in rows]
            rows = self._db.execute(
                "SELECT userid, length(data) FROM userdata WHERE domid = ? AND uuid = ? ORDER BY userid",
                incarnation,
            ).fetchall()
        except sqlite3.Error as exc:
            self._fail(exc, incarnation)
        return [Item(incarnation.domid, incarnation.uuid, userid, size) for userid, size in rows]

    def drop(self, incarnations: Collection[Incarnation]) -> int:
        if not incarnations:
            return 0
        with self._transact() as db, self.recorded_as(db, "reap"):
            # rowcount, unlike total_changes, leaves out the triggers' rows.
            return db.executemany(_DROP, incarnations).rowcount

    def _stored(self) -> set[tuple[int, str]]:
        try:
            return set(self._db.execute("SELECT DISTINCT domid, uuid FROM userdata").fetchall())
        except sqlite3.Error as exc:
            self._fail(exc)

    def incarnations(self) -> set[Incarnation]:
        return {Incarnation._make(row) for row in self._stored()}

    def dead(self, live: Callable[[], set[Incarnation]]) -> list[Incarnation]:
        # Row tuples hash and compare as Incarnations do: build named tuples
        # only for the dead, not for every stored incarnation.
        stored = self._stored()
        return sorted(Incarnation._make(row) for row in stored - live())

    def domain_table(self) -> DomainTable:
        return _SQLiteDomains(self)

    def managed_ops(self) -> ManagedOps:
        return _SQLiteManagedOps(self)

    def close(self) -> None:
        try:
            self._db.close()
        finally:
            self._locks.close()


class _SQLiteManagedOps(ManagedOps):
    """Lock, then one statement that finds the domain and acts on its item."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self._db = store._db
        self._locks = store._locks

    def _absent(self, domid: int, userid: str) -> DomainNotFound:
        return DomainNotFound(
            "no live domain (source managed)", store=self._store.url, domain=domid, userid=userid
        )

    def get(self, domid: int, userid: str, timeout: float) -> bytes | None:
        lock = self._locks.lock(domid, timeout)
        try:
            row = self._db.execute(_SELECT_BY_DOMID, (domid, userid)).fetchone()
        except sqlite3.Error as exc:
            self._store._fail(exc, domid, userid)
        finally:
            lock.release()
        if row is None:
            raise self._absent(domid, userid)
        return self._store._checked(row[0], domid, userid)

    def put(self, domid: int, userid: str, data: bytes, timeout: float) -> None:
        params = (domid, userid, data)
        lock = self._locks.lock(domid, timeout)
        try:
            cursor = self._store._retry(lambda: self._db.execute(_UPSERT_BY_DOMID, params), domid, userid)
        finally:
            lock.release()
        if cursor.rowcount == 0:
            raise self._absent(domid, userid)

    def delete(self, domid: int, userid: str, timeout: float) -> bool:
        params = (domid, userid)
        lock = self._locks.lock(domid, timeout)
        try:
            if self._store._retry(lambda: self._db.execute(_DELETE_BY_DOMID, params), domid, userid).rowcount:
                return True
            # Nothing deleted: say whether that is because there is no domain.
            if self._db.execute("SELECT 1 FROM domains WHERE domid = ?", (domid,)).fetchone() is None:
                raise self._absent(domid, userid)
            return False
        finally:
            lock.release()


class _SQLiteDomains(DomainTable):
    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self._db = store._db

    def add(self, domid: int | None, uuid: str, name: str | None) -> Domain:
        store = self._store
        with store._transact() as db:
            if domid is None:
                domid = db.execute(_FREE_DOMID).fetchone()[0]
            elif db.execute("SELECT 1 FROM domains WHERE domid = ?", (domid,)).fetchone():
                raise DomainExists("a domain with this domid exists", store=store.url, domain=domid)
            if name is not None and db.execute("SELECT 1 FROM domains WHERE name = ?", (name,)).fetchone():
                raise DomainExists(f"a domain named {name!r} exists", store=store.url, domain=domid)
            db.execute("INSERT INTO domains (domid, uuid, name) VALUES (?, ?, ?)", (domid, uuid, name))
        assert domid is not None
        return Domain(domid, uuid, name)

    def remove(self, incarnation: Incarnation) -> int:
        with self._store._transact() as db, self._store.recorded_as(db, "destroy"):
            db.execute("DELETE FROM domains WHERE domid = ? AND uuid = ?", incarnation)
            return db.execute(_DROP, incarnation).rowcount

    def get(self, domid: int) -> Domain | None:
        return _domain(self._query(_DOMAIN + " WHERE domid = ?", (domid,)).fetchone())

    def with_uuid(self, uuid: str) -> Sequence[Domain]:
        return [Domain(*row) for row in self._query(_DOMAIN + " WHERE uuid = ? ORDER BY domid", (uuid,))]

    def with_name(self, name: str) -> Domain | None:
        return _domain(self._query(_DOMAIN + " WHERE name = ?", (name,)).fetchone())

    def all(self) -> Sequence[Domain]:
        return [Domain(*row) for row in self._query(_DOMAIN + " ORDER BY domid", ())]

    def _query(self, sql: str, params: tuple[object, ...]) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            self._store._fail(exc)
