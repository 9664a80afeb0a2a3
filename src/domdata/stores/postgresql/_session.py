"""One store's PostgreSQL session: the pool, the resident connection, the
connection pinned by session locks, and the errors of all of them translated.

A context makes one call at a time: it keeps one connection out of the pool
(getconn and putconn would cost a sixth of a short call). ``lock()`` takes
the domain's advisory lock for the session, on one connection pinned from
the pool until the last lock is released, and every call on a locked domain
runs on that connection, so a lost session fails the call instead of
running it unlocked.

A lock handed to child processes (``hand_off``) is held by a keeper process
instead (``_keeper.py``): the child proves it by the socket it inherited
(its peer is the keeper) and by the server (the keeper's session holds the
domain's advisory lock in this very database). See docs/locking.md.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from ..._errors import LockTimeout, StoreUnavailable
from ._connections import drop_if_hung_up, milliseconds, one_line, server_of, session_setup

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, LiteralString, NoReturn

    from ._connections import Connection, Cursor, Row

#: The resident connection, the one pinned by ``lock()``, two for other threads.
POOL_MAX_SIZE = 4

IDLE = TransactionStatus.IDLE

_UNLOCK = "SELECT pg_advisory_unlock(domdata_lock_key(%s, %s))"
#: The application name of a keeper's session; *pid* is the keeper's.
KEEPER_NAME = "domdata-keeper {pid}"
#: Whether the session named so holds the (host, domid) lock in this database.
_KEPT = """SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND ((l.classid::bigint << 32) | l.objid::bigint) = domdata_lock_key(%s, %s)
    AND a.application_name = %s)"""
#: Seconds a keeper may take to start, besides connecting and waiting for the lock.
KEEPER_START = 30.0
_PEERCRED = struct.Struct("3i")


class _DomainLock:
    def __init__(self, session: Session, domid: int) -> None:
        self._session = session
        self._domid = domid

    def release(self) -> None:
        self._session.unlock(self._domid)

    # The lock is keyed by (host, domid): nothing of an ended incarnation is left to remove.
    discard = release


class _Taken:
    """``lock`` of a domid whose lock a keeper holds for this process: nothing to release."""

    def release(self) -> None:
        """The keeper keeps it."""

    discard = release


_TAKEN = _Taken()


class _Kept:
    """A domain lock held by a keeper process while any process holds ``fd``.

    While this process holds it, the session's ``lock`` of that domid takes
    it at once, and the one-step calls act without locking (``kept``)."""

    shared = True

    def __init__(self, session: Session, fd: int, domid: int) -> None:
        self._session = session
        self.fd = fd
        self._domid = domid
        # Readable once the keeper has exited: each call in the hand-off asks.
        self._gone = select.poll()
        self._gone.register(fd, select.POLLIN)

    def check(self) -> None:
        """StoreUnavailable once the keeper has exited (its end of the socket closed)."""
        if self._gone.poll(0):
            raise StoreUnavailable(
                "the keeper of the handed-off lock has exited: the domain's lock is no longer held",
                store=self._session.url,
                domain=self._domid,
            )


class _KeptLock(_Kept):
    """A keeper's lock handed off by this process: release closes its copy of the socket."""

    def release(self) -> None:
        self._session.kept.pop(self._domid, None)
        os.close(self.fd)

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
        # The connection a context's calls use (one call at a time), its cursor,
        # and a poll on its socket that is readable once the server hung up.
        self._resident: Connection | None = None
        self._cursor: Cursor | None = None
        self._hangup = select.poll()
        self._resident_busy = threading.Lock()
        # Session locks: the pinned connection holding them, how many times each
        # domid is held, and domids whose lock died with a lost session.
        self._pinned: Connection | None = None
        self._held: dict[int, int] = {}
        self._lost: dict[int, int] = {}
        #: Domids whose lock a keeper holds for this process (handed off or adopted).
        self.kept: dict[int, _Kept] = {}

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

    def _settle(self) -> Cursor:
        """The resident connection's cursor (with the resident's mutex held),
        after a new connection from the pool if the server hung up on the
        old one or there is none yet."""
        cursor = self._cursor
        if cursor is not None and not self._hangup.poll(0):
            return cursor
        if self._resident is not None:
            self._resident.close()
            self._drop_resident()
        conn = self._resident = self._pool.getconn()
        # One cursor for the connection's life: making one per call costs a
        # fifth of a short query.
        cursor = self._cursor = conn.cursor(binary=True)
        self._hangup = select.poll()
        self._hangup.register(conn.pgconn.socket, select.POLLIN)
        return cursor

    def _drop_resident(self) -> None:
        """Hand the resident back to the pool (to reset or replace)."""
        conn, self._resident, self._cursor = self._resident, None, None
        if conn is not None:
            self._pool.putconn(conn)

    def fetch(self, query: LiteralString, params: Sequence[object] | Mapping[str, object]) -> Row | None:
        """The first row of *query* (binary results), on the resident
        connection, or on one from the pool while another thread has it.
        psycopg's errors are the caller's. The hot path of the fused calls
        and single reads: no context manager, no cursor made."""
        if not self._resident_busy.acquire(blocking=False):
            conn = self._pool.getconn()
            try:
                return conn.execute(query, params, binary=True).fetchone()
            finally:
                self._pool.putconn(conn)
        try:
            cursor = self._settle()
            try:
                return cursor.execute(query, params).fetchone()
            finally:
                if cursor.connection.pgconn.transaction_status != IDLE:
                    # Broken or mid-transaction: the pool resets or replaces it.
                    self._drop_resident()
        finally:
            self._resident_busy.release()

    def read(
        self,
        domids: Collection[int],
        query: LiteralString,
        params: Sequence[object],
        domain: object = None,
        userid: str | None = None,
    ) -> Row | None:
        """The first row of *query* on the connection for *domids*, as
        ``connection_for`` chooses it, psycopg's errors translated: the
        resident connection's cursor unless a session lock is held or lost."""
        if self._pinned is not None or self._lost:
            with self.connection_for(domids, domain, userid) as conn:
                return conn.execute(query, params, binary=True).fetchone()
        try:
            return self.fetch(query, params)
        except psycopg.Error as exc:
            self.fail(exc, domain, userid)

    def borrow(self) -> Connection:
        """The resident connection, or one from the pool while it is busy;
        hand it back with ``give_back``."""
        if not self._resident_busy.acquire(blocking=False):
            return self._pool.getconn()
        try:
            self._settle()
        except BaseException:
            self._resident_busy.release()
            raise
        assert self._resident is not None
        return self._resident

    def give_back(self, conn: Connection) -> None:
        if conn is not self._resident:
            self._pool.putconn(conn)
            return
        if conn.pgconn.transaction_status != IDLE:
            # Broken or mid-transaction: the pool resets or replaces it.
            self._drop_resident()
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

    def lock(self, domid: int, timeout: float) -> _DomainLock | _Taken:
        kept = self.kept.get(domid)
        if kept is not None:
            kept.check()
            return _TAKEN
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

    def hand_off(self, domid: int, timeout: float) -> _KeptLock:
        """Have a keeper process take the domain's lock, and hold it while any
        process holds the socket returned (see ``_keeper.py``)."""
        ours, its = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with ours:
            try:
                starter = subprocess.Popen(
                    [sys.executable, "-m", "domdata.stores.postgresql._keeper", str(its.fileno())],
                    pass_fds=(its.fileno(),),
                    start_new_session=True,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            except OSError as exc:
                raise StoreUnavailable(
                    f"cannot start the lock keeper: {exc}", store=self.url, domain=domid
                ) from exc
            finally:
                its.close()
            starter.wait()
            request = {
                "url": self._url,
                "host": self.host,
                "domid": domid,
                "timeout_ms": milliseconds(timeout),
                "connect_timeout": self._kwargs["connect_timeout"],
            }
            ours.settimeout(timeout + self._timeout + KEEPER_START)
            try:
                ours.send(json.dumps(request).encode())
                answer, fds, _, _ = socket.recv_fds(ours, 4096, 1)
            except OSError as exc:
                raise StoreUnavailable(
                    f"the lock keeper did not answer: {exc}", store=self.url, domain=domid
                ) from exc
        for fd in fds[1:]:
            os.close(fd)
        if fds and answer == b'{"ok": true}':
            os.set_inheritable(fds[0], False)
            handed = self.kept[domid] = _KeptLock(self, fds[0], domid)
            return handed
        for fd in fds:
            os.close(fd)
        error = json.loads(answer).get("error") if answer else "it exited before taking the lock"
        if error == "timeout":
            raise LockTimeout(
                f"the domain's lock is held elsewhere: gave up after {timeout:g} s",
                store=self.url,
                domain=domid,
            )
        raise StoreUnavailable(f"the lock keeper: {error}", store=self.url, domain=domid)

    def adopt(self, fd: int, domid: int) -> _Kept | None:
        """The domain's lock held by a keeper, if *fd* is a socket whose peer is
        a keeper whose session holds it in this database; None otherwise."""
        try:
            with socket.socket(fileno=os.dup(fd)) as probe:
                if probe.family != socket.AF_UNIX:
                    return None
                pid = _PEERCRED.unpack(
                    probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
                )[0]
        except OSError:
            return None
        held = _Kept(self, fd, domid)
        try:
            held.check()
        except StoreUnavailable:
            return None
        with self.connection_for((), domid) as conn:
            row = conn.execute(_KEPT, (self.host, domid, KEEPER_NAME.format(pid=pid))).fetchone()
        if row is None or not row[0]:
            return None
        self.kept[domid] = held
        return held

    def connect(self) -> Connection:
        """A connection of its own, outside the pool (a follower's); psycopg's errors are the caller's."""
        return psycopg.connect(self._url, **self._kwargs)

    def close(self) -> None:
        if self._resident is not None:
            with suppress(psycopg.Error):
                self._drop_resident()
        if self._pinned is not None:
            with suppress(psycopg.Error):
                self._pool.putconn(self._pinned)
            self._pinned = None
        self._pool.close()
