"""One store's PostgreSQL session: the pool, the resident connection, the
connection pinned by session locks, and the errors of all of them translated.

A context makes one call at a time: it keeps one connection out of the pool
(getconn and putconn would cost a sixth of a short call). ``lock()`` takes
the domain's advisory lock for the session, on one connection pinned from
the pool until the last lock is released, and every call on a locked domain
runs on that connection, so a lost session fails the call instead of
running it unlocked.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from typing import Any, NoReturn

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from ..._errors import LockTimeout, StoreUnavailable
from ._connections import (
    Connection,
    drop_if_hung_up,
    hung_up,
    milliseconds,
    one_line,
    server_of,
    session_setup,
)

#: The resident connection, the one pinned by ``lock()``, two for other threads.
POOL_MAX_SIZE = 4

IDLE = TransactionStatus.IDLE

_UNLOCK = "SELECT pg_advisory_unlock(domdata_lock_key(%s, %s))"


class _DomainLock:
    def __init__(self, session: Session, domid: int) -> None:
        self._session = session
        self._domid = domid

    def release(self) -> None:
        self._session.unlock(self._domid)

    # The lock is keyed by (host, domid): nothing of an ended incarnation is left to remove.
    discard = release


class Session:
    """The connections of one store, and the session locks it holds."""

    def __init__(
        self, url: str, printable: str, params: dict[str, Any], timeout: float, host: str, durable: bool
    ) -> None:
        self.url = printable
        self.host = host
        self.server = server_of(params)
        self._url = url
        self._timeout = timeout
        self._kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": round(timeout)}
        if "application_name" not in params:
            self._kwargs["application_name"] = "domdata"
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            kwargs=self._kwargs,
            min_size=1,
            max_size=POOL_MAX_SIZE,
            timeout=timeout,
            # Short, so that after an outage the next call connects at once
            # instead of waiting out a long backoff.
            reconnect_timeout=max(2 * timeout, 10.0),
            configure=session_setup(durable),
            check=drop_if_hung_up,
            name=f"domdata {printable}",
            num_workers=1,
            open=True,
        )
        self._resident: Connection | None = None
        self._resident_busy = threading.Lock()
        # Session locks: the pinned connection holding them, how many times each
        # domid is held, and domids whose lock died with a lost session.
        self._pinned: Connection | None = None
        self._held: dict[int, int] = {}
        self._lost: dict[int, int] = {}


    def fail(
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

    def borrow(self) -> Connection:
        """The resident connection, or one from the pool while it is busy;
        hand it back with ``give_back``. (Not a context manager: this is the
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

    def give_back(self, conn: Connection) -> None:
        if conn is not self._resident:
            self._pool.putconn(conn)
            return
        if conn.pgconn.transaction_status != IDLE:
            # Broken or mid-transaction: the pool resets or replaces it.
            self._resident = None
            self._pool.putconn(conn)
        self._resident_busy.release()

    @contextmanager
    def pooled(self) -> Iterator[Connection]:
        conn = self.borrow()
        try:
            yield conn
        finally:
            self.give_back(conn)

    @contextmanager
    def connection_for(
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
                with self.pooled() as conn:
                    yield conn
        except psycopg.Error as exc:
            self.fail(exc, domain, userid, timeout)

    def _check_pinned(self) -> None:
        """After an error on the pinned connection: if it broke, its locks are gone."""
        conn = self._pinned
        if conn is not None and conn.broken:
            for domid, count in self._held.items():
                self._lost[domid] = self._lost.get(domid, 0) + count
            self._held.clear()
            self._pinned = None
            self._pool.putconn(conn)


    def lock(self, domid: int, timeout: float) -> _DomainLock:
        if self._pinned is None:
            try:
                self._pinned = self._pool.getconn()
            except PoolTimeout as exc:
                self.fail(exc, domid)
        conn = self._pinned
        try:
            conn.execute("SELECT domdata_lock(%s, %s, %s)", (self.host, domid, milliseconds(timeout)))
        except psycopg.Error as exc:
            self._check_pinned()
            self._unpin_if_idle()
            self.fail(exc, domid, timeout=timeout)
        self._held[domid] = self._held.get(domid, 0) + 1
        return _DomainLock(self, domid)

    def unlock(self, domid: int) -> None:
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
                self.fail(exc, domid)
        self._unpin_if_idle()

    def _unpin_if_idle(self) -> None:
        if self._pinned is not None and not self._held:
            conn, self._pinned = self._pinned, None
            self._pool.putconn(conn)


    def connect(self) -> Connection:
        """A connection of its own, outside the pool (a follower's); psycopg's errors are the caller's."""
        return psycopg.connect(self._url, **self._kwargs)

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
