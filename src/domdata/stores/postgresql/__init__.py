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
from collections.abc import Collection, Iterator, Mapping, Sequence

import psycopg

from ..._boot import Boot
from ..._changes import Change, ChangeFeed, Listing
from ..._errors import InvalidURL, StoreUnavailable
from ..._types import Incarnation, Item
from .._handoff import HandsOff
from ..base import ClusterStore, Holdings, OneStepTable, StoreDescription, StoreOptions
from ._changes import PostgreSQLFeed, counted, logged
from ._connections import one_line, printable_url, server_of
from ._domains import PostgreSQLDomains, migrate
from ._schema import ensure_schema
from ._session import Session

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import LiteralString

    from ..._changes import Removal
    from .._handoff import AdoptedLock, HandedLock
    from ..base import HeldLock
    from ._connections import Connection

__all__ = ["PostgreSQLStore"]

#: Seconds to wait for a connection when the URL sets no ``connect_timeout``.
DEFAULT_CONNECT_TIMEOUT = 5
#: The longest connect_timeout a URL may set, in seconds (a day).
MAX_CONNECT_TIMEOUT = 86_400
MAX_HOST_LENGTH = 255

_SELECT = "SELECT data FROM userdata WHERE host = %s AND domid = %s AND uuid = %s AND userid = %s"
_UPSERT = (
    "WITH up AS (INSERT INTO userdata (host, domid, uuid, userid, data, boot) VALUES (%s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (host, domid, uuid, userid) DO UPDATE SET data = excluded.data, boot = excluded.boot"
    " RETURNING host, domid, uuid, userid, octet_length(data) AS size)"
    " SELECT domdata_log('store', host, domid, uuid, userid, size) FROM up"
)
_DELETE = "DELETE FROM userdata WHERE host = %s AND domid = %s AND uuid = %s AND userid = %s"
_ITEMS = "SELECT userid, octet_length(data) FROM userdata WHERE host = %s AND domid = %s AND uuid = %s"
# Following a boot, an item of an earlier one is absent (NULL: the item has no boot).
_IN_BOOT = " AND (boot IS NULL OR boot = %s)"
_EARLIER_BOOT = (
    "SELECT domid, uuid, userid, octet_length(data) FROM userdata WHERE host = %s AND boot <> %s"
    " ORDER BY domid, uuid, userid"
)
_DROP = (
    "DELETE FROM userdata WHERE host = %s AND (domid, uuid) IN"
    " (SELECT * FROM unnest(%s::bigint[], %s::uuid[]))"
)
_DROP_EARLIER_BOOT = _DROP + " AND boot <> %s"


def _connect_timeout(params: Mapping[str, object], url: str) -> int:
    """The URL's connect_timeout (default DEFAULT_CONNECT_TIMEOUT), once its
    ports and timeout are ones libpq reads as written: InvalidURL otherwise.
    (libpq waits forever for a timeout of 0 or less.)"""
    ports = str(params.get("port") or "")
    for port in ports.split(","):
        if port and not (port.isascii() and port.isdigit() and 0 < int(port) <= 65535):
            raise InvalidURL(f"port {port!r} is not a number in 1..65535", store=url)
    timeout = str(params.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT)
    if not (timeout.isascii() and timeout.isdigit() and 0 < int(timeout) <= MAX_CONNECT_TIMEOUT):
        raise InvalidURL(
            f"connect_timeout {timeout!r} is not a whole number of seconds in 1..{MAX_CONNECT_TIMEOUT}",
            store=url,
        )
    return int(timeout)


class PostgreSQLStore(ClusterStore, HandsOff, ChangeFeed):
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
        timeout = _connect_timeout(params, self.url)
        self.server = server_of(params)
        # One connection of its own first: a server that refuses is an error at
        # once, not after the pool's timeout; it brings the schema up to date.
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=timeout) as first:
                ensure_schema(first, self.url)
                if options.retention is not None:
                    PostgreSQLFeed.set_retention(first, options.retention)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot use the {self.server}: {one_line(exc)}", store=self.url) from exc
        self._session = Session(url, self.url, params, timeout, self.host, options.durable)
        self._domains = PostgreSQLDomains(self._session)
        self._feed = PostgreSQLFeed(self._session)
        # The boot followed (None: items have no boot), and the reads that see only its items.
        self._boot: str | None = None
        self._in_boot: tuple[str, ...] = ()
        self._select: LiteralString = _SELECT
        self._delete: LiteralString = logged(_DELETE)
        self._items: LiteralString = _ITEMS

    def follow_boot(self, boot: Boot) -> None:
        self._boot = boot.id
        self._in_boot = (boot.id,)
        self._select = _SELECT + _IN_BOOT
        self._delete = logged(_DELETE + _IN_BOOT)
        self._items = _ITEMS + _IN_BOOT

    def earlier_boot(self) -> Sequence[Item]:
        if self._boot is None:
            return []
        with self._session.connection_for(()) as conn:
            rows = conn.execute(_EARLIER_BOOT, (self.host, self._boot)).fetchall()
        return [Item(*row) for row in rows]

    def drop_earlier_boot(self, incarnations: Collection[Incarnation]) -> int:
        if self._boot is None or not incarnations:
            return 0
        domids = [i.domid for i in incarnations]
        params = (self.host, domids, [i.uuid for i in incarnations], self._boot, "reap")
        with self._session.connection_for(domids) as conn:
            return counted(conn.execute(logged(_DROP_EARLIER_BOOT), params))

    def lock(self, domid: int, uuid: str | None, timeout: float) -> HeldLock:
        return self._session.lock(domid, timeout)

    def hand_off(self, domid: int, uuid: str | None, timeout: float) -> HandedLock:
        return self._session.hand_off(domid, timeout)

    def adopt(self, fd: int, incarnation: Incarnation) -> AdoptedLock | None:
        return self._session.adopt(fd, incarnation.domid)

    def get(self, incarnation: Incarnation, userid: str) -> bytes | None:
        domid = incarnation.domid
        params = (self.host, domid, incarnation.uuid, userid, *self._in_boot)
        row = self._session.read((domid,), self._select, params, incarnation, userid)
        if row is None:
            return None
        data: bytes = row[0]
        return data

    def put(self, incarnation: Incarnation, userid: str, data: bytes) -> None:
        domid, uuid = incarnation
        with self._session.connection_for((domid,), incarnation, userid) as conn:
            conn.execute(_UPSERT, (self.host, domid, uuid, userid, data, self._boot))

    def delete(self, incarnation: Incarnation, userid: str) -> bool:
        with self._session.connection_for((incarnation.domid,), incarnation, userid) as conn:
            params = (self.host, incarnation.domid, incarnation.uuid, userid, *self._in_boot, "delete")
            return counted(conn.execute(self._delete, params)) > 0

    def items(self, incarnation: Incarnation | None) -> Sequence[Item]:
        domids = () if incarnation is None else (incarnation.domid,)
        with self._session.connection_for(domids, incarnation) as conn:
            return self._items_on(conn, incarnation, everywhere=False)

    def items_everywhere(self) -> Sequence[Item]:
        with self._session.connection_for(()) as conn:
            return self._items_on(conn, None, everywhere=True)

    def _items_on(self, conn: Connection, incarnation: Incarnation | None, *, everywhere: bool) -> list[Item]:
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
        params = (self.host, *incarnation, *self._in_boot)
        rows = conn.execute(self._items + " ORDER BY userid", params).fetchall()
        return [Item(incarnation.domid, incarnation.uuid, userid, size) for userid, size in rows]

    def drop(self, incarnations: Collection[Incarnation], op: Removal) -> int:
        if not incarnations:
            return 0
        domids = [i.domid for i in incarnations]
        params = (self.host, domids, [i.uuid for i in incarnations], op)
        with self._session.connection_for(domids) as conn:
            return counted(conn.execute(logged(_DROP), params))

    def changes(self, domid: int | None, since: int | None, follow: bool) -> Iterator[Change]:
        return self._feed.changes(domid, since, follow)

    def listing(self, incarnation: Incarnation | None, all_hosts: bool) -> Listing:
        domids = () if incarnation is None else (incarnation.domid,)
        return self._feed.listing(
            lambda conn: self._items_on(conn, incarnation, everywhere=all_hosts), domids, incarnation
        )

    def incarnations(self) -> set[Incarnation]:
        with self._session.connection_for(()) as conn:
            rows = conn.execute("SELECT DISTINCT domid, uuid FROM userdata WHERE host = %s", (self.host,))
            return {Incarnation(domid, uuid) for domid, uuid in rows}

    def domain_table(self) -> OneStepTable:
        return self._domains

    def migrate(self, incarnation: Incarnation, host: str, domid: int) -> int:
        return migrate(self._session, incarnation, host, domid)

    def bound_source(self) -> str | None:
        with self._session.connection_for(()) as conn:
            row = conn.execute("SELECT source FROM sources WHERE host = %s", (self.host,)).fetchone()
        return None if row is None else str(row[0])

    def bind_source(self, spec: str) -> None:
        with self._session.connection_for(()) as conn:
            conn.execute(
                "INSERT INTO sources (host, source) VALUES (%s, %s)"
                " ON CONFLICT (host) DO UPDATE SET source = excluded.source",
                (self.host, spec),
            )

    def holdings(self) -> Holdings:
        with self._session.connection_for(()) as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM userdata WHERE host = %s),"
                " EXISTS (SELECT 1 FROM domains WHERE host = %s)",
                (self.host, self.host),
            ).fetchone()
        assert row is not None
        return Holdings(bool(row[0]), bool(row[1]))

    def describe(self) -> StoreDescription:
        with self._session.connection_for(()) as conn:
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return StoreDescription(self.server, row[0] if row else None, self.host)

    def close(self) -> None:
        self._feed.close()
        self._session.close()
