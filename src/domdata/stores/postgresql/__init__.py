"""``postgresql://``: one database shared by a cluster of hosts.

Every row carries the host its domid belongs to, so an incarnation is
``(host, domid, uuid)`` and two hosts never see each other's domids. The
domain lock is a PostgreSQL advisory lock keyed on (host, domid): the fused
managed calls take it for their own transaction inside a server-side
function (one round trip); ``lock()`` takes it for the session, on one
connection pinned from the pool until the last lock is released, and every
call on a locked domain runs on that connection, so a lost session fails
the call instead of running it unlocked. Schema and keys: docs/postgresql.md.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, NoReturn

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from ..._errors import DomainNotFound, LockTimeout, StoreUnavailable
from ..._types import Incarnation, Item
from ..base import DomainTable, HeldLock, ManagedOps, Store, StoreOptions
from ._changes import PostgreSQLChangeFeed
from ._connections import Connection, drop_if_hung_up, hung_up, one_line, printable_url, session_setup
from ._domains import FusedOps, PostgreSQLDomains, migrate
from ._schema import ensure_schema, milliseconds

__all__ = ["PostgreSQLStore"]

#: Seconds to wait for a connection when the URL sets no ``connect_timeout``.
DEFAULT_CONNECT_TIMEOUT = 5
#: The resident connection, the one pinned by ``lock()``, two for other threads.
POOL_MAX_SIZE = 4
MAX_HOST_LENGTH = 255

IDLE = TransactionStatus.IDLE

_SELECT = "SELECT data FROM userdata WHERE host = %s AND domid = %s AND uuid = %s AND userid = %s"
_UPSERT = (
    "INSERT INTO userdata (host, domid, uuid, userid, data) VALUES (%s, %s, %s, %s, %s)"
    " ON CONFLICT (host, domid, uuid, userid) DO UPDATE SET data = excluded.data"
)
# The managed source's existence check, inside the write's own statement.
_UPSERT_MANAGED = (
    "INSERT INTO userdata (host, domid, uuid, userid, data) SELECT host, domid, uuid, %s, %s"
    " FROM domains WHERE host = %s AND domid = %s AND uuid = %s"
    " ON CONFLICT (host, domid, uuid, userid) DO UPDATE SET data = excluded.data"
)
_DELETE = "DELETE FROM userdata WHERE host = %s AND domid = %s AND uuid = %s AND userid = %s"
_ITEMS = (
    "SELECT userid, octet_length(data) FROM userdata WHERE host = %s AND domid = %s AND uuid = %s"
    " ORDER BY userid"
)
_DROP = (
    "DELETE FROM userdata WHERE host = %s AND (domid, uuid) IN"
    " (SELECT * FROM unnest(%s::bigint[], %s::uuid[]))"
)
_UNLOCK = "SELECT pg_advisory_unlock(domdata_lock_key(%s, %s))"


class _DomainLock:
    def __init__(self, store: PostgreSQLStore, domid: int) -> None:
        self._store = store
        self._domid = domid

    def release(self) -> None:
        self._store._unlock(self._domid)


class PostgreSQLStore(PostgreSQLChangeFeed, Store):
    """Items and managed domains of every host in one PostgreSQL database."""

    def __init__(self, url: str, options: StoreOptions) -> None:
        self.url = printable_url(url)
        self.host = socket.gethostname() if options.host is None else options.host
        if not 0 < len(self.host) <= MAX_HOST_LENGTH or not self.host.isprintable():
            raise StoreUnavailable(
                f"host name {self.host!r} is not 1 to {MAX_HOST_LENGTH} printable characters", store=self.url
            )
        self.managed = options.managed
        try:
            params = psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"not a PostgreSQL URL: {exc}", store=self.url) from exc
        self.server = "PostgreSQL server {}:{} database {}".format(
            params.get("host") or "(default socket)",
            params.get("port") or 5432,
            params.get("dbname") or "(default)",
        )
        self._timeout = float(params.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT)
        self._url = url
        self._kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": round(self._timeout)}
        if "application_name" not in params:
            self._kwargs["application_name"] = "domdata"
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            kwargs=self._kwargs,
            min_size=1,
            max_size=POOL_MAX_SIZE,
            timeout=self._timeout,
            # Short, so that after an outage the next call connects at once
            # instead of waiting out a long backoff.
            reconnect_timeout=max(2 * self._timeout, 10.0),
            configure=session_setup(options.durable),
            check=drop_if_hung_up,
            name=f"domdata {self.url}",
            num_workers=1,
            open=True,
        )
        # A context makes one call at a time: it keeps one connection out of
        # the pool (getconn and putconn would cost a sixth of a short call).
        self._resident: Connection | None = None
        self._resident_busy = threading.Lock()
        # Session locks: the pinned connection holding them, how many times each
        # domid is held, and domids whose lock died with a lost session.
        self._pinned: Connection | None = None
        self._held: dict[int, int] = {}
        self._lost: dict[int, int] = {}
        try:
            with self._pooled() as conn:
                ensure_schema(conn, self.url)
                if options.retention is not None:
                    self.set_retention(conn, options.retention)
        except psycopg.Error as exc:
            self.close()
            self._fail(exc)
        except BaseException:
            self.close()
            raise

    # -- plumbing ----------------------------------------------------------

    def _fail(
        self,
        exc: BaseException,
        domain: object = None,
        userid: str | None = None,
        timeout: float | None = None,
    ) -> NoReturn:
        if isinstance(exc, psycopg.errors.LockNotAvailable):
            waited = "" if timeout is None else f": gave up after {timeout:g} s"
            raise LockTimeout(
                f"the domain's lock is held elsewhere{waited}", store=self.url, domain=domain, userid=userid
            ) from exc
        if isinstance(exc, PoolTimeout):
            raise StoreUnavailable(
                f"no connection to the {self.server} within {self._timeout:g} s: {self._diagnose()}",
                store=self.url,
                domain=domain,
                userid=userid,
            ) from exc
        if isinstance(exc, psycopg.OperationalError):
            raise StoreUnavailable(
                f"lost the {self.server}: {one_line(exc)}", store=self.url, domain=domain, userid=userid
            ) from exc
        raise StoreUnavailable(
            f"{self.server}: {one_line(exc)}", store=self.url, domain=domain, userid=userid
        ) from exc

    def _diagnose(self) -> str:
        """Why the pool has no connection: what a connection attempt says."""
        try:
            psycopg.connect(self._url, **self._kwargs).close()
        except psycopg.Error as exc:
            return one_line(exc)
        return "the pool is busy"

    def _borrow(self) -> Connection:
        """The resident connection, or one from the pool while it is busy;
        hand it back with ``_give_back``. (Not a context manager: this is the
        fused calls' hot path.)"""
        if not self._resident_busy.acquire(blocking=False):
            return self._pool.getconn()
        try:
            conn = self._resident
            if conn is None or hung_up(conn):
                if conn is not None:
                    self._resident = None
                    conn.close()
                    self._pool.putconn(conn)
                conn = self._resident = self._pool.getconn()
            return conn
        except BaseException:
            self._resident_busy.release()
            raise

    def _give_back(self, conn: Connection) -> None:
        if conn is not self._resident:
            self._pool.putconn(conn)
            return
        if conn.pgconn.transaction_status != IDLE:
            # Broken or mid-transaction: the pool resets or replaces it.
            self._resident = None
            self._pool.putconn(conn)
        self._resident_busy.release()

    @contextmanager
    def _pooled(self) -> Iterator[Connection]:
        conn = self._borrow()
        try:
            yield conn
        finally:
            self._give_back(conn)

    @contextmanager
    def _connection_for(
        self,
        domids: Collection[int],
        domain: object = None,
        userid: str | None = None,
        timeout: float | None = None,
    ) -> Iterator[Connection]:
        """A connection for a call on *domids*: the pinned one if it holds their
        lock, else one from the pool. psycopg errors become domdata errors."""
        if lost := [d for d in domids if d in self._lost]:
            raise StoreUnavailable(
                f"the session holding the lock of domain {lost[0]} was lost: "
                "release the lock and take it again",
                store=self.url,
                domain=domain,
                userid=userid,
            )
        try:
            if self._pinned is not None and any(d in self._held for d in domids):
                try:
                    yield self._pinned
                except psycopg.OperationalError:
                    self._check_pinned()
                    raise
            else:
                with self._pooled() as conn:
                    yield conn
        except psycopg.Error as exc:
            self._fail(exc, domain, userid, timeout)

    def _check_pinned(self) -> None:
        """After an error on the pinned connection: if it broke, its locks are gone."""
        conn = self._pinned
        if conn is not None and conn.broken:
            for domid, count in self._held.items():
                self._lost[domid] = self._lost.get(domid, 0) + count
            self._held.clear()
            self._pinned = None
            self._pool.putconn(conn)

    # -- locks -------------------------------------------------------------

    def lock(self, domid: int, uuid: str | None, timeout: float) -> HeldLock:
        if self._pinned is None:
            try:
                self._pinned = self._pool.getconn()
            except PoolTimeout as exc:
                self._fail(exc, domid)
        conn = self._pinned
        try:
            conn.execute("SELECT domdata_lock(%s, %s, %s)", (self.host, domid, milliseconds(timeout)))
        except psycopg.Error as exc:
            self._check_pinned()
            self._unpin_if_idle()
            self._fail(exc, domid, timeout=timeout)
        self._held[domid] = self._held.get(domid, 0) + 1
        return _DomainLock(self, domid)

    def _unlock(self, domid: int) -> None:
        if domid in self._lost:
            self._lost[domid] -= 1
            if not self._lost[domid]:
                del self._lost[domid]
            return
        self._held[domid] -= 1
        if not self._held[domid]:
            del self._held[domid]
        assert self._pinned is not None
        try:
            self._pinned.execute(_UNLOCK, (self.host, domid))
        except psycopg.Error as exc:
            self._check_pinned()
            # A broken session has released its locks by ending.
            if self._pinned is not None:
                self._fail(exc, domid)
        self._unpin_if_idle()

    def _unpin_if_idle(self) -> None:
        if self._pinned is not None and not self._held:
            conn, self._pinned = self._pinned, None
            self._pool.putconn(conn)

    # -- Store -------------------------------------------------------------

    def get(self, incarnation: Incarnation, userid: str) -> bytes | None:
        with self._connection_for((incarnation.domid,), incarnation, userid) as conn:
            row = conn.execute(_SELECT, (self.host, incarnation.domid, incarnation.uuid, userid)).fetchone()
        if row is None:
            return None
        data: bytes = row[0]
        return data

    def put(self, incarnation: Incarnation, userid: str, data: bytes) -> None:
        domid, uuid = incarnation
        with self._connection_for((domid,), incarnation, userid) as conn:
            if self.managed:
                cursor = conn.execute(_UPSERT_MANAGED, (userid, data, self.host, domid, uuid))
            else:
                cursor = conn.execute(_UPSERT, (self.host, domid, uuid, userid, data))
        if cursor.rowcount == 0:
            raise DomainNotFound("the domain is gone", store=self.url, domain=incarnation, userid=userid)

    def delete(self, incarnation: Incarnation, userid: str) -> bool:
        with self._connection_for((incarnation.domid,), incarnation, userid) as conn:
            cursor = conn.execute(_DELETE, (self.host, incarnation.domid, incarnation.uuid, userid))
        return cursor.rowcount > 0

    def items(self, incarnation: Incarnation | None) -> Sequence[Item]:
        domids = () if incarnation is None else (incarnation.domid,)
        with self._connection_for(domids, incarnation) as conn:
            return self._items_on(conn, incarnation, False)

    def items_everywhere(self) -> Sequence[Item]:
        with self._connection_for(()) as conn:
            return self._items_on(conn, None, True)

    def _items_on(self, conn: Connection, incarnation: Incarnation | None, everywhere: bool) -> list[Item]:
        if everywhere:
            rows = conn.execute(
                "SELECT domid, uuid, userid, octet_length(data), host FROM userdata"
                " ORDER BY host, domid, uuid, userid"
            ).fetchall()
            return [Item(*row) for row in rows]
        if incarnation is None:
            rows = conn.execute(
                "SELECT domid, uuid, userid, octet_length(data) FROM userdata WHERE host = %s"
                " ORDER BY domid, uuid, userid",
                (self.host,),
            ).fetchall()
            return [Item(*row) for row in rows]
        rows = conn.execute(_ITEMS, (self.host, *incarnation)).fetchall()
        return [Item(incarnation.domid, incarnation.uuid, userid, size) for userid, size in rows]

    def drop(self, incarnations: Collection[Incarnation]) -> int:
        if not incarnations:
            return 0
        domids = [i.domid for i in incarnations]
        with self._connection_for(domids) as conn, conn.transaction():
            self.record_as(conn, "reap")
            cursor = conn.execute(_DROP, (self.host, domids, [i.uuid for i in incarnations]))
        return cursor.rowcount

    def incarnations(self) -> set[Incarnation]:
        with self._connection_for(()) as conn:
            rows = conn.execute("SELECT DISTINCT domid, uuid FROM userdata WHERE host = %s", (self.host,))
            return {Incarnation(domid, uuid) for domid, uuid in rows}

    def domain_table(self) -> DomainTable:
        return PostgreSQLDomains(self)

    def managed_ops(self) -> ManagedOps | None:
        return FusedOps(self) if self.managed else None

    def migrate(self, incarnation: Incarnation, host: str | None, domid: int) -> int:
        return migrate(self, incarnation, self.host if host is None else host, domid)

    def close(self) -> None:
        if self._resident is not None:
            with suppress(psycopg.Error):
                self._pool.putconn(self._resident)
            self._resident = None
        if self._pinned is not None:
            with suppress(psycopg.Error):
                self._pool.putconn(self._pinned)
            self._pinned = None
        self._pool.close()
