"""``postgresql://``: one database shared by a cluster of hosts.

Every row carries the host its domid belongs to, so an incarnation is
``(host, domid, uuid)`` and two hosts never see each other's domids. The
domain lock is a PostgreSQL advisory lock keyed on (host, domid): the
one-step managed calls take it for their own transaction inside a
server-side function (one round trip); ``lock()`` takes it for the session
(``_session.py``). Schema and keys: docs/postgresql.md.
"""

from __future__ import annotations

import socket
from collections.abc import Collection, Sequence

import psycopg

from ..._errors import InvalidURL, StoreUnavailable
from ..._types import Incarnation, Item
from .._handoff import AdoptedLock, HandedLock, HandsOff
from ..base import ClusterStore, HeldLock, OneStepTable, StoreOptions
from ._connections import printable_url
from ._domains import PostgreSQLDomains, migrate
from ._schema import ensure_schema
from ._session import Session

__all__ = ["PostgreSQLStore"]

#: Seconds to wait for a connection when the URL sets no ``connect_timeout``.
DEFAULT_CONNECT_TIMEOUT = 5
MAX_HOST_LENGTH = 255

_SELECT = "SELECT data FROM userdata WHERE host = %s AND domid = %s AND uuid = %s AND userid = %s"
_UPSERT = (
    "INSERT INTO userdata (host, domid, uuid, userid, data) VALUES (%s, %s, %s, %s, %s)"
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


class PostgreSQLStore(ClusterStore, HandsOff):
    """Items and managed domains of every host in one PostgreSQL database."""

    def __init__(self, url: str, options: StoreOptions) -> None:
        self.url = printable_url(url)
        self.host = socket.gethostname() if options.host is None else options.host
        if not 0 < len(self.host) <= MAX_HOST_LENGTH or not self.host.isprintable():
            raise StoreUnavailable(
                f"host name {self.host!r} is not 1 to {MAX_HOST_LENGTH} printable characters", store=self.url
            )
        try:
            params = psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise InvalidURL(f"not a PostgreSQL URL: {exc}", store=self.url) from exc
        timeout = float(params.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT)
        self._session = Session(url, self.url, params, timeout, self.host, options.durable)
        self.server = self._session.server
        try:
            with self._session.pooled() as conn:
                ensure_schema(conn, self.url)
        except psycopg.Error as exc:
            self.close()
            self._session.fail(exc)
        except BaseException:
            self.close()
            raise
        self._domains = PostgreSQLDomains(self._session)

    def lock(self, domid: int, uuid: str | None, timeout: float) -> HeldLock:
        return self._session.lock(domid, timeout)

    def hand_off(self, domid: int, uuid: str | None, timeout: float) -> HandedLock:
        return self._session.hand_off(domid, timeout)

    def adopt(self, fd: int, incarnation: Incarnation) -> AdoptedLock | None:
        return self._session.adopt(fd, incarnation.domid)

    def get(self, incarnation: Incarnation, userid: str) -> bytes | None:
        with self._session.connection_for((incarnation.domid,), incarnation, userid) as conn:
            row = conn.execute(_SELECT, (self.host, incarnation.domid, incarnation.uuid, userid)).fetchone()
        if row is None:
            return None
        data: bytes = row[0]
        return data

    def put(self, incarnation: Incarnation, userid: str, data: bytes) -> None:
        domid, uuid = incarnation
        with self._session.connection_for((domid,), incarnation, userid) as conn:
            conn.execute(_UPSERT, (self.host, domid, uuid, userid, data))

    def delete(self, incarnation: Incarnation, userid: str) -> bool:
        with self._session.connection_for((incarnation.domid,), incarnation, userid) as conn:
            cursor = conn.execute(_DELETE, (self.host, incarnation.domid, incarnation.uuid, userid))
        return cursor.rowcount > 0

    def items(self, incarnation: Incarnation | None) -> Sequence[Item]:
        if incarnation is None:
            with self._session.connection_for(()) as conn:
                rows = conn.execute(
                    "SELECT domid, uuid, userid, octet_length(data) FROM userdata WHERE host = %s"
                    " ORDER BY domid, uuid, userid",
                    (self.host,),
                ).fetchall()
            return [Item(*row) for row in rows]
        with self._session.connection_for((incarnation.domid,), incarnation) as conn:
            rows = conn.execute(_ITEMS, (self.host, *incarnation)).fetchall()
        return [Item(incarnation.domid, incarnation.uuid, userid, size) for userid, size in rows]

    def items_everywhere(self) -> Sequence[Item]:
        with self._session.connection_for(()) as conn:
            rows = conn.execute(
                "SELECT domid, uuid, userid, octet_length(data), host FROM userdata"
                " ORDER BY host, domid, uuid, userid"
            ).fetchall()
        return [Item(*row) for row in rows]

    def drop(self, incarnations: Collection[Incarnation]) -> int:
        if not incarnations:
            return 0
        domids = [i.domid for i in incarnations]
        with self._session.connection_for(domids) as conn:
            cursor = conn.execute(_DROP, (self.host, domids, [i.uuid for i in incarnations]))
        return cursor.rowcount

    def incarnations(self) -> set[Incarnation]:
        with self._session.connection_for(()) as conn:
            rows = conn.execute("SELECT DISTINCT domid, uuid FROM userdata WHERE host = %s", (self.host,))
            return {Incarnation(domid, uuid) for domid, uuid in rows}

    def domain_table(self) -> OneStepTable:
        return self._domains

    def migrate(self, incarnation: Incarnation, host: str, domid: int) -> int:
        return migrate(self._session, incarnation, host, domid)

    def close(self) -> None:
        self._session.close()
