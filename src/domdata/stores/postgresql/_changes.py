"""The change feed of the PostgreSQL store (schema migration 3).

Recording: a row trigger on ``userdata`` inserts one row into ``changes`` for
every item written, deleted or moved, by any path: the plain statements, the
fused server-side functions (``domdata_put``/``domdata_delete`` need no new
version: the trigger fires inside them), ``drop``, the managed ``destroy`` and
``migrate``. A removal that is not an ``unlink`` says its op in the
transaction-local setting ``domdata.change_op``; a migration (an UPDATE that
moves an item to another host or domid) records ``migrate`` at the old place
and ``store`` at the new one.

Commit order: a sequence gives revisions in allocation order, and a follower
reading "rev > N" could miss a lower revision that commits later. So the
trigger takes a transaction-level advisory lock, ("chng", 0), before taking
the next revision; it is held until the transaction has committed and become
visible, so revisions are assigned in commit order across every host, and a
snapshot that sees revision N sees every committed revision below N. The
cost: writing transactions of the whole cluster commit one at a time from
their first change on. PostgreSQL already serialises the commits of
transactions that NOTIFY (the notification queue's lock), which the feed
needs too; benchmarks/rows_changes.py measures the whole.

Waking: the trigger NOTIFYs ``domdata_changes`` (delivered at commit, once per
transaction). A follower LISTENs on a connection of its own, then reads: a
commit after the LISTEN wakes it, a commit before is in what it reads. When
the connection is lost (a server restart) it reconnects, listens again and
reads on from its last revision.

Retention: every 256th revision, the trigger deletes the changes both older
than the retention age and beyond the retention count, and notes the highest
revision deleted in ``change_trimmed``: ``since`` below it is ChangesLost.
Revisions of rolled-back transactions leave holes; holes are never lost.
"""

from __future__ import annotations

import select
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, LiteralString

import psycopg

from ..._changes import Change, ChangeFeed, ChangeOp, Listing, Retention
from ..._errors import ChangesLost, StoreUnavailable
from ..._types import Incarnation, Item
from ._connections import Connection, one_line

#: The NOTIFY channel.
CHANNEL = "domdata_changes"
_DEFAULT = Retention()

#: Schema migration 3: the changes, the trigger that records them, retention.
MIGRATION: tuple[LiteralString, ...] = (
    "CREATE SEQUENCE changes_rev",
    """CREATE TABLE changes (
        rev bigint PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT statement_timestamp(),
        op text NOT NULL CHECK (op IN ('store', 'delete', 'destroy', 'reap', 'migrate')),
        host text NOT NULL,
        domid bigint NOT NULL,
        uuid uuid NOT NULL,
        userid text NOT NULL,
        size integer)""",
    """CREATE TABLE change_retention (
        id integer PRIMARY KEY CHECK (id = 1), changes bigint NOT NULL, seconds double precision NOT NULL)""",
    "INSERT INTO change_retention VALUES (1, 100000, 86400)",
    "CREATE TABLE change_trimmed (id integer PRIMARY KEY CHECK (id = 1), upto bigint NOT NULL)",
    "INSERT INTO change_trimmed VALUES (1, 0)",
    """CREATE FUNCTION domdata_record_change() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            v_rev bigint;
            v_keep bigint;
            v_seconds double precision;
            v_upto bigint;
        BEGIN
            -- Revisions in commit order: one writer at a time from here to its commit.
            PERFORM pg_advisory_xact_lock(1667788391, 0);
            IF TG_OP = 'DELETE' THEN
                INSERT INTO changes (rev, op, host, domid, uuid, userid, size)
                    VALUES (nextval('changes_rev'),
                            coalesce(nullif(current_setting('domdata.change_op', true), ''), 'delete'),
                            OLD.host, OLD.domid, OLD.uuid, OLD.userid, NULL)
                    RETURNING rev INTO v_rev;
            ELSIF TG_OP = 'UPDATE'
                AND (OLD.host, OLD.domid, OLD.uuid) IS DISTINCT FROM (NEW.host, NEW.domid, NEW.uuid) THEN
                INSERT INTO changes (rev, op, host, domid, uuid, userid, size)
                    VALUES (nextval('changes_rev'), 'migrate',
                            OLD.host, OLD.domid, OLD.uuid, OLD.userid, NULL);
                INSERT INTO changes (rev, op, host, domid, uuid, userid, size)
                    VALUES (nextval('changes_rev'), 'store', NEW.host, NEW.domid, NEW.uuid, NEW.userid,
                            octet_length(NEW.data))
                    RETURNING rev INTO v_rev;
            ELSE
                INSERT INTO changes (rev, op, host, domid, uuid, userid, size)
                    VALUES (nextval('changes_rev'), 'store', NEW.host, NEW.domid, NEW.uuid, NEW.userid,
                            octet_length(NEW.data))
                    RETURNING rev INTO v_rev;
            END IF;
            PERFORM pg_notify('domdata_changes', '');
            IF v_rev % 256 = 0 THEN
                SELECT changes, seconds INTO v_keep, v_seconds FROM change_retention;
                WITH gone AS (
                    DELETE FROM changes WHERE rev < least(
                        v_rev + 1 - v_keep,
                        coalesce((SELECT c.rev FROM changes c
                                  WHERE c.at >= statement_timestamp() - make_interval(secs => v_seconds)
                                  ORDER BY c.rev LIMIT 1), v_rev))
                    RETURNING rev)
                SELECT max(rev) INTO v_upto FROM gone;
                IF v_upto IS NOT NULL THEN
                    UPDATE change_trimmed SET upto = greatest(upto, v_upto);
                END IF;
            END IF;
            RETURN NULL;
        END $$""",
    """CREATE TRIGGER userdata_changes AFTER INSERT OR UPDATE OR DELETE ON userdata
        FOR EACH ROW EXECUTE FUNCTION domdata_record_change()""",
)

_REPEATABLE = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
_NEWEST = "SELECT coalesce((SELECT max(rev) FROM changes), (SELECT upto FROM change_trimmed))"
_BOUNDS = (
    "SELECT (SELECT upto FROM change_trimmed), (SELECT min(rev) FROM changes),"
    " (SELECT max(rev) FROM changes),"
    " (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM changes_rev)"
)
_READ = "SELECT rev, op, host, domid, uuid::text, userid, size FROM changes WHERE rev > %s AND rev <= %s"
_BATCH = 1000
#: Idle, re-read this often even without a notification.
_SAFETY = 5.0
#: A follower that lost its server tries to reconnect this long, then gives up.
RECONNECT_PATIENCE = 60.0


def _lost(url: str, since: int, oldest: int, newest: int) -> ChangesLost:
    if since > newest:
        what = f"revision {since} is newer than this store's newest ({newest}): it comes from another store"
    else:
        what = f"the changes after revision {since} are no longer retained (oldest available: {oldest})"
    return ChangesLost(
        what + "; list again, then follow from the list's revision", since=since, oldest=oldest, store=url
    )


class PostgreSQLChangeFeed(ChangeFeed):
    """The feed half of PostgreSQLStore (which provides these attributes)."""

    url: str
    host: str
    _url: str
    _kwargs: dict[str, Any]
    _removal: ChangeOp | None = None

    if TYPE_CHECKING:

        @contextmanager
        def _connection_for(
            self,
            domids: Sequence[int],
            domain: object = None,
            userid: str | None = None,
            timeout: float | None = None,
        ) -> Iterator[Connection]: ...

        def _items_on(
            self, conn: Connection, incarnation: Incarnation | None, everywhere: bool
        ) -> list[Item]: ...

    # -- writing -------------------------------------------------------------

    def set_retention(self, conn: Connection, retention: Retention) -> None:
        conn.execute(
            "UPDATE change_retention SET changes = %s, seconds = %s", (retention.changes, retention.seconds)
        )

    @contextmanager
    def removing(self, op: ChangeOp) -> Iterator[None]:
        self._removal = op
        try:
            yield
        finally:
            self._removal = None

    def record_as(self, conn: Connection, op: ChangeOp) -> None:
        """Inside a transaction: items deleted in it are changes of *op* (or of
        the op of an enclosing ``removing``)."""
        conn.execute("SELECT set_config('domdata.change_op', %s, true)", (self._removal or op,))

    # -- reading -------------------------------------------------------------

    def listing(self, incarnation: Incarnation | None, all_hosts: bool) -> Listing:
        domids = () if incarnation is None else (incarnation.domid,)
        with self._connection_for(domids, incarnation) as conn, conn.transaction():
            conn.execute(_REPEATABLE)
            items = self._items_on(conn, incarnation, all_hosts)
            row = conn.execute(_NEWEST).fetchone()
        assert row is not None
        return Listing(items, int(row[0]))

    def changes(self, domid: int | None, since: int | None, follow: bool) -> Iterator[Change]:
        reader = _Reader(
            self._url, self._kwargs, self.url, None if domid is None else (self.host, domid), follow
        )
        try:
            last = reader.start(since)
        except BaseException:
            reader.close()
            raise
        return reader.run(last)


class _Reader:
    """One follower's own connection, listening when it follows."""

    def __init__(
        self, url: str, kwargs: dict[str, Any], printable: str, domain: tuple[str, int] | None, follow: bool
    ) -> None:
        self._url, self._kwargs, self._printable = url, kwargs, printable
        self._follow = follow
        self._sql: LiteralString = _READ + (" AND host = %s AND domid = %s" if domain else "")
        self._sql += " ORDER BY rev"
        self._domain: tuple[object, ...] = domain or ()
        self._conn: Connection | None = None
        self._connect()

    def _fail(self, exc: psycopg.Error) -> StoreUnavailable:
        return StoreUnavailable(f"PostgreSQL: {one_line(exc)}", store=self._printable)

    def _connect(self) -> None:
        try:
            conn = psycopg.connect(self._url, **self._kwargs)
            if self._follow:
                conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            raise self._fail(exc) from exc
        self._conn = conn

    def _read(self, last: int) -> tuple[list[Any], int]:
        """A batch of changes after *last* and the revision read up to; ChangesLost
        if what follows *last* is no longer retained. One snapshot."""
        conn = self._conn
        assert conn is not None
        with conn.transaction():
            conn.execute(_REPEATABLE)
            bounds = conn.execute(_BOUNDS).fetchone()
            assert bounds is not None
            trimmed, oldest, newest, allocated = bounds
            if last < trimmed or last > allocated:
                raise _lost(self._printable, last, trimmed + 1 if oldest is None else oldest, allocated)
            # A range of revisions, not a LIMIT: without fresh statistics the
            # planner would sort the whole tail for each batch.
            upto = min(trimmed if newest is None else newest, last + _BATCH)
            rows = conn.execute(self._sql, (last, upto, *self._domain)).fetchall()
        return rows, max(upto, last)

    def start(self, since: int | None) -> int:
        try:
            if since is not None:
                self._read(since)
                return since
            assert self._conn is not None
            row = self._conn.execute(
                "SELECT coalesce((SELECT min(rev) FROM changes), (SELECT upto + 1 FROM change_trimmed))"
            ).fetchone()
        except psycopg.Error as exc:
            raise self._fail(exc) from exc
        assert row is not None
        return int(row[0]) - 1

    def run(self, last: int) -> Iterator[Change]:
        try:
            while True:
                try:
                    rows, upto = self._read(last)
                except psycopg.OperationalError:
                    if not self._follow:
                        raise
                    self._reconnect()
                    continue
                for rev, op, host, domid, uuid, userid, size in rows:
                    yield Change(rev, op, host, domid, uuid, userid, size)
                advanced, last = upto > last, upto
                if advanced:
                    continue
                if not self._follow:
                    return
                try:
                    self._wait()
                except psycopg.OperationalError:
                    self._reconnect()
        except psycopg.Error as exc:
            raise self._fail(exc) from exc
        finally:
            self.close()

    def _wait(self) -> None:
        """Until a notification (or the connection) has something to say.

        Notifications that came during the last read are in psycopg's backlog:
        take them first. Then sleep in poll(2) on the socket: psycopg's own
        wait wakes every 100 ms, which an idle follower would pay for."""
        conn = self._conn
        assert conn is not None
        if list(conn.notifies(timeout=0)):
            return
        poller = select.poll()
        poller.register(conn.pgconn.socket, select.POLLIN)
        poller.poll(int(_SAFETY * 1000))

    def _reconnect(self) -> None:
        """The server went away: connect and listen again; the caller reads on
        from its last revision, so nothing is missed and nothing repeated."""
        self.close()
        deadline = time.monotonic() + RECONNECT_PATIENCE
        delay = 0.05
        while True:
            try:
                self._connect()
                return
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
