"""The cluster-wide managed domain table with its one-step calls, and migration.

Each host sees only its own rows: the table is one per host, kept in one
database so that a migration moves a domain between hosts in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from ..._errors import DomainExists, ItemsClash
from ..._types import Domain, Incarnation
from ..base import NO_DOMAIN, NoDomain, OneStepTable
from ._changes import SORTED, counted
from ._connections import milliseconds
from ._session import Session

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, LiteralString

#: How long a migration waits for the destination domain's lock.
MIGRATE_LOCK_TIMEOUT = 60.0

_DOMAIN = "SELECT domid, uuid::text, name FROM domains WHERE host = %s"
_BY_DOMID: LiteralString = _DOMAIN + " AND domid = %s"
_GET = "SELECT domdata_get(%s, %s, %s, %s)"
_PUT = "SELECT domdata_put(%s, %s, %s, %s, %s)"
_DELETE = "SELECT domdata_delete(%s, %s, %s, %s)"
# The one-step calls on a domain whose lock a keeper holds for this process:
# what the functions above do after taking the lock, one statement each. No
# row: no domain.
_KEPT_GET = """SELECT u.data FROM domains d LEFT JOIN userdata u
    ON u.host = d.host AND u.domid = d.domid AND u.uuid = d.uuid AND u.userid = %(userid)s
    WHERE d.host = %(host)s AND d.domid = %(domid)s"""
_KEPT_PUT = """WITH up AS (INSERT INTO userdata (host, domid, uuid, userid, data)
    SELECT d.host, d.domid, d.uuid, %(userid)s, %(data)s::bytea FROM domains d
    WHERE d.host = %(host)s AND d.domid = %(domid)s
    ON CONFLICT (host, domid, uuid, userid) DO UPDATE SET data = excluded.data, boot = NULL
    RETURNING host, domid, uuid, userid, octet_length(data) AS size)
    SELECT domdata_log('store', host, domid, uuid, userid, size) > 0 FROM up"""
_KEPT_DELETE = """
    WITH d AS (SELECT host, domid, uuid FROM domains WHERE host = %(host)s AND domid = %(domid)s),
    gone AS (DELETE FROM userdata u USING d
             WHERE u.host = d.host AND u.domid = d.domid AND u.uuid = d.uuid AND u.userid = %(userid)s
             RETURNING u.host, u.domid, u.uuid, u.userid)
    SELECT (SELECT count(domdata_log('delete', host, domid, uuid, userid, NULL)) FROM gone) FROM d"""
# One host's domain table is changed by one transaction at a time: two
# creations must not pick the same free domid. Keys ("domd", hashtext(host))
# in the two-key space, apart from the domain locks.
_HOST_LOCK = "SELECT pg_advisory_xact_lock(1685024100, hashtext(%s))"
# The lowest free domid >= 1: 1 itself, or the first domid after a taken one.
_FREE_DOMID = """
    SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM domains WHERE host = %(host)s AND domid = 1)
    UNION ALL (
        SELECT d.domid + 1 FROM domains d WHERE d.host = %(host)s AND d.domid >= 1
        AND NOT EXISTS (SELECT 1 FROM domains e WHERE e.host = %(host)s AND e.domid = d.domid + 1)
        ORDER BY d.domid LIMIT 1)
    LIMIT 1"""
# Deleting the domain and its items in one statement is one transaction. The
# items are recorded sorted, once all are taken (see _changes.SORTED).
_REMOVE = """
    WITH gone AS (DELETE FROM domains WHERE host = %(host)s AND domid = %(domid)s AND uuid = %(uuid)s),
    items AS (DELETE FROM userdata WHERE host = %(host)s AND domid = %(domid)s AND uuid = %(uuid)s
              RETURNING host, domid, uuid, userid)
    SELECT count(domdata_log('destroy', host, domid, uuid, userid, NULL))
    FROM (SELECT * FROM items""" + SORTED + ") AS items"

# An incarnation's items to another (host, domid); the self-join gives each
# item's old place, which RETURNING alone does not; recorded sorted (_changes.SORTED).
_MOVE = """
    WITH moved AS (
        UPDATE userdata u SET host = %s, domid = %s, boot = CASE WHEN u.host = %s THEN u.boot END
        FROM userdata o
        WHERE o.host = u.host AND o.domid = u.domid AND o.uuid = u.uuid AND o.userid = u.userid
            AND u.host = %s AND u.domid = %s AND u.uuid = %s
        RETURNING o.host AS was_host, o.domid AS was_domid, u.host, u.domid, u.uuid, u.userid,
            octet_length(u.data) AS size)
    SELECT count(*) FILTER (WHERE recorded.op = 'store')
    FROM (SELECT * FROM moved""" + SORTED + """) AS moved, LATERAL (
        SELECT 'migrate' AS op, domdata_log('migrate', was_host, was_domid, uuid, userid, NULL)
        UNION ALL SELECT 'store', domdata_log('store', host, domid, uuid, userid, size)) AS recorded"""


class PostgreSQLDomains(OneStepTable):
    """The managed domains of the store's host. The one-step calls lock, check
    the domain and act in one round trip: one call of a server-side function
    (see _schema, migration 2)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._host = session.host
        self._timeout = -1.0
        self._timeout_ms = 0

    def add(self, domid: int | None, uuid: str, name: str | None) -> Domain:
        session, host = self._session, self._host
        with session.connection_for(() if domid is None else (domid,), domid) as conn, conn.transaction():
            conn.execute(_HOST_LOCK, (host,))
            if domid is None:
                row = conn.execute(_FREE_DOMID, {"host": host}).fetchone()
                assert row is not None
                domid = int(row[0])
            elif conn.execute(
                "SELECT 1 FROM domains WHERE host = %s AND domid = %s", (host, domid)
            ).fetchone():
                raise DomainExists(
                    f"a domain with this domid exists on host {host}", store=session.url, domain=domid
                )
            named = None
            if name is not None:
                named = conn.execute(
                    "SELECT domid FROM domains WHERE host = %s AND name = %s", (host, name)
                ).fetchone()
            if named is not None:
                # The domain that has the name, not the domid this one would have had.
                raise DomainExists(
                    f"a domain named {name!r} exists on host {host}", store=session.url, domain=named[0]
                )
            conn.execute(
                "INSERT INTO domains (host, domid, uuid, name) VALUES (%s, %s, %s, %s)",
                (host, domid, uuid, name),
            )
        return Domain(domid, uuid, name)

    def remove(self, incarnation: Incarnation) -> int:
        params = {"host": self._host, "domid": incarnation.domid, "uuid": incarnation.uuid}
        with self._session.connection_for((incarnation.domid,), incarnation) as conn:
            return counted(conn.execute(_REMOVE, params))

    def get(self, domid: int) -> Domain | None:
        # A single read: every call inside a lock or a hand-off makes it.
        row = self._session.read((), _BY_DOMID, (self._host, domid), domid)
        return None if row is None else Domain(*row)

    def with_uuid(self, uuid: str) -> Sequence[Domain]:
        return self._query(_DOMAIN + " AND uuid = %s ORDER BY domid", (self._host, uuid))

    def with_name(self, name: str) -> Domain | None:
        rows = self._query(_DOMAIN + " AND name = %s", (self._host, name))
        return rows[0] if rows else None

    def all(self) -> Sequence[Domain]:
        return self._query(_DOMAIN + " ORDER BY domid", (self._host,))

    def _query(self, query: str, params: tuple[object, ...]) -> list[Domain]:
        with self._session.connection_for(()) as conn:
            return [Domain(*row) for row in conn.execute(query, params)]

    def _milliseconds(self, timeout: float) -> int:
        # The same timeout comes with every call: convert it once.
        if timeout != self._timeout:
            self._timeout, self._timeout_ms = timeout, milliseconds(timeout)
        return self._timeout_ms

    def get_item(self, domid: int, userid: str, timeout: float) -> bytes | NoDomain | None:
        data: bytes | NoDomain | None
        if domid in self._session.kept:
            data = self._kept(_KEPT_GET, domid, userid)
        else:
            params = (self._host, domid, userid, self._milliseconds(timeout))
            data = self._call(_GET, params, domid, userid, timeout)
        return data

    def put_item(self, domid: int, userid: str, data: bytes, timeout: float) -> NoDomain | None:
        if domid in self._session.kept:
            found = self._kept(_KEPT_PUT, domid, userid, data)
        else:
            params = (self._host, domid, userid, data, self._milliseconds(timeout))
            found = self._call(_PUT, params, domid, userid, timeout)
        return None if found is True else NO_DOMAIN

    def delete_item(self, domid: int, userid: str, timeout: float) -> bool | NoDomain:
        deleted: int | NoDomain
        if domid in self._session.kept:
            deleted = self._kept(_KEPT_DELETE, domid, userid)
        else:
            params = (self._host, domid, userid, self._milliseconds(timeout))
            deleted = self._call(_DELETE, params, domid, userid, timeout)
        if isinstance(deleted, NoDomain) or deleted < 0:
            return NO_DOMAIN
        return deleted > 0

    def _kept(self, query: LiteralString, domid: int, userid: str, data: bytes | None = None) -> Any:
        """A one-step call on a domain whose lock a keeper holds for this
        process (a hand-off), once the keeper proves it still holds it: the
        first column of its row; NO_DOMAIN when there is no row."""
        session = self._session
        session.kept[domid].check()
        params = {"host": self._host, "domid": domid, "userid": userid, "data": data}
        try:
            row = session.fetch(query, params)
        except psycopg.Error as exc:
            session.fail(exc, domid, userid)
        return NO_DOMAIN if row is None else row[0]

    def _call(
        self, query: LiteralString, params: tuple[object, ...], domid: int, userid: str, timeout: float
    ) -> Any:
        try:
            row = self._session.fetch(query, params)
        except psycopg.errors.NoDataFound:
            return NO_DOMAIN
        except psycopg.Error as exc:
            self._session.fail(exc, domid, userid, timeout)
        assert row is not None
        return row[0]


def migrate(session: Session, incarnation: Incarnation, host: str, domid: int) -> int:
    """Move the incarnation's items, and its managed domain unless the
    destination already runs it (the receiving half of a live migration)."""
    source = (session.host, incarnation.domid, incarnation.uuid)
    if (host, domid) == source[:2]:
        return 0
    timeout = MIGRATE_LOCK_TIMEOUT
    with (
        session.connection_for((incarnation.domid,), incarnation, timeout=timeout) as conn,
        conn.transaction(),
    ):
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (str(milliseconds(timeout)),))
        conn.execute("SELECT pg_advisory_xact_lock(domdata_lock_key(%s, %s))", (host, domid))
        there = conn.execute(
            "SELECT uuid FROM domains WHERE host = %s AND domid = %s FOR UPDATE", (host, domid)
        ).fetchone()
        if there is not None and there[0] != incarnation.uuid:
            raise DomainExists(
                f"host {host} runs another domain with domid {domid}", store=session.url, domain=incarnation
            )
        clash = conn.execute(
            "SELECT userid FROM userdata WHERE host = %s AND domid = %s AND uuid = %s AND userid IN"
            " (SELECT userid FROM userdata WHERE host = %s AND domid = %s AND uuid = %s) ORDER BY userid",
            (host, domid, incarnation.uuid, *source),
        ).fetchall()
        if clash:
            names = ", ".join(repr(row[0]) for row in clash)
            raise ItemsClash(
                f"domain {domid} on host {host} already has items {names}: nothing moved",
                store=session.url,
                domain=incarnation,
            )
        if there is None:
            # A managed domain's record moves with it; other sources keep none.
            try:
                conn.execute(
                    "UPDATE domains SET host = %s, domid = %s WHERE host = %s AND domid = %s AND uuid = %s",
                    (host, domid, *source),
                )
            except psycopg.errors.UniqueViolation as exc:
                raise DomainExists(
                    f"host {host} has a domain with this one's name", store=session.url, domain=incarnation
                ) from exc
        # The boot an item was written in is its host's: on another host it has none.
        # Each item moved is two changes, in this order: gone from the old place, stored at the new.
        return counted(conn.execute(_MOVE, (host, domid, host, *source)))
