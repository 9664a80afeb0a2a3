"""The change feed of the PostgreSQL store (schema migrations 4, 6 and 7).

Recording: every statement of domdata's that writes ``userdata`` records one
row in ``changes`` for each item it wrote, deleted or moved, with its op, in
the same statement or server-side function: ``domdata_log`` records one
change (the plain statements wrap their write in a CTE and call it for each
row); ``domdata_put`` writes its ``store`` change out in full, as it is the
path of every single store. A migration records ``migrate`` at the old place
and ``store`` at the new one, item by item. Until migration 7 a row trigger
recorded them: what a write paid for the trigger's machinery was a third of
the feed's cost. Only domdata writes this database's tables; a program that
changes ``userdata`` with SQL of its own records nothing.

Commit order: a sequence gives revisions in allocation order, and a follower
reading "rev > N" could miss a lower revision that commits later. So the
recording takes a transaction-level advisory lock, ("chng", 0), before taking
the next revision; it is held until the transaction has committed and become
visible, so revisions are assigned in commit order across every host, and a
snapshot that sees revision N sees every committed revision below N. The
cost: writing transactions of the whole cluster commit one at a time from
their first change on. PostgreSQL already serialises the commits of
transactions that NOTIFY (the notification queue's lock), which the feed
needs too; benchmarks/rows_changes.py measures the whole.

Waking: the recording NOTIFYs ``domdata_changes`` (delivered at commit, once per
transaction), but only while someone follows (migration 7): every follower
holds the listeners' lock, ("chng", 2), shared for as long as its connection
lives, and a writer that gets it exclusively (without waiting) knows nobody
follows and skips the NOTIFY, which a write nobody reads need not pay for. It
then holds that lock until it commits, so a follower that starts meanwhile
waits for the commit before it LISTENs. A follower takes the lock, LISTENs,
then reads: a commit after the LISTEN wakes it, a commit before is in what it
reads. When the connection is lost (a server restart) it reconnects, takes
the lock, listens again and reads on from its last revision. Closing the
store wakes it, waiting or reconnecting: it closes its connection and raises
StoreUnavailable (``_closing``).

Retention: ``domdata_trim_changes`` deletes the changes both older than the
retention age and beyond the retention count, and notes the highest revision
deleted in ``change_trimmed``: ``since`` below it is ChangesLost. Readers
trim, in a transaction of their own, when they start and as they follow, so
a write pays nothing for it; for a store nobody reads, a writer trims 256
changes every 256th revision once more than 65,536 changes beyond retention
are kept (migration 6). Revisions of rolled-back transactions leave holes;
holes are never lost.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress

import psycopg

from ..._changes import Change, Listing, Retention, changes_lost
from ..._errors import StoreUnavailable
from ..._types import Item
from .._closing import Closing
from ._connections import one_line
from ._session import Session

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, LiteralString

    from ._connections import Connection

#: The NOTIFY channel.
CHANNEL = "domdata_changes"
#: Held shared by every follower: a writer that can take it exclusively skips the NOTIFY.
_FOLLOWING = "SELECT pg_advisory_lock_shared(1667788391, 2)"
_DEFAULT = Retention()

#: The schema migration of the feed: the changes, the trigger that records them, retention.
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

#: Schema migration 6: what a write pays for the feed, cut. The op's CHECK
#: constraint goes (PostgreSQL parses a CHECK afresh for every statement that
#: inserts: a sixth of the feed's cost); the trigger writes only the ops of
#: the vocabulary instead. The feed's lock is tried as an expression before
#: it is waited for, and the NOTIFY rides on the insert's RETURNING (a
#: PERFORM is a whole query, a tenth of the rest). Trimming leaves the write:
#: ``domdata_trim_changes`` runs in its readers' transactions; a writer calls
#: it only as a backstop for a store nobody reads, every 256th revision, and
#: it deletes only once more than 65,536 changes beyond retention are kept.
#: It restates migration 4's trigger function whole, on purpose: migrations
#: are append-only, so a released one is never edited.
TRIM_MIGRATION: tuple[LiteralString, ...] = (
    "ALTER TABLE changes DROP CONSTRAINT changes_op_check",
    # What retention lets go, at most p_limit changes, once more than
    # p_slack changes beyond the retained count are kept; how many went.
    # One trimmer at a time: another finds the lock taken and leaves.
    """CREATE FUNCTION domdata_trim_changes(p_limit bigint, p_slack bigint) RETURNS bigint
        LANGUAGE plpgsql VOLATILE AS $$
        DECLARE
            v_keep bigint;
            v_seconds double precision;
            v_oldest bigint;
            v_newest bigint;
            v_upto bigint;
            v_gone bigint;
        BEGIN
            IF NOT pg_try_advisory_xact_lock(1667788391, 1) THEN
                RETURN 0;
            END IF;
            SELECT changes, seconds INTO v_keep, v_seconds FROM change_retention;
            SELECT min(rev), max(rev) INTO v_oldest, v_newest FROM changes;
            IF v_oldest IS NULL OR v_newest - v_oldest < v_keep + p_slack THEN
                RETURN 0;
            END IF;
            WITH gone AS (
                DELETE FROM changes WHERE rev < least(
                    v_oldest + p_limit,
                    v_newest + 1 - v_keep,
                    coalesce((SELECT c.rev FROM changes c
                              WHERE c.at >= statement_timestamp() - make_interval(secs => v_seconds)
                              ORDER BY c.rev LIMIT 1), v_newest))
                RETURNING rev)
            SELECT max(rev), count(*) INTO v_upto, v_gone FROM gone;
            IF v_upto IS NOT NULL THEN
                UPDATE change_trimmed SET upto = greatest(upto, v_upto);
            END IF;
            RETURN v_gone;
        END $$""",
    """CREATE OR REPLACE FUNCTION domdata_record_change() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            v_rev bigint;
            v_notified text;
        BEGIN
            -- Revisions in commit order: one writer at a time from here to its commit.
            IF NOT pg_try_advisory_xact_lock(1667788391, 0) THEN
                PERFORM pg_advisory_xact_lock(1667788391, 0);
            END IF;
            IF TG_OP = 'DELETE' THEN
                INSERT INTO changes (rev, op, host, domid, uuid, userid, size)
                    VALUES (nextval('changes_rev'),
                            CASE current_setting('domdata.change_op', true)
                                WHEN 'destroy' THEN 'destroy' WHEN 'reap' THEN 'reap' ELSE 'delete' END,
                            OLD.host, OLD.domid, OLD.uuid, OLD.userid, NULL)
                    RETURNING rev, pg_notify('domdata_changes', '')::text INTO v_rev, v_notified;
            ELSIF TG_OP = 'UPDATE'
                AND (OLD.host, OLD.domid, OLD.uuid) IS DISTINCT FROM (NEW.host, NEW.domid, NEW.uuid) THEN
                INSERT INTO changes (rev, op, host, domid, uuid, userid, size)
                    VALUES (nextval('changes_rev'), 'migrate',
                            OLD.host, OLD.domid, OLD.uuid, OLD.userid, NULL);
                INSERT INTO changes (rev, op, host, domid, uuid, userid, size)
                    VALUES (nextval('changes_rev'), 'store', NEW.host, NEW.domid, NEW.uuid, NEW.userid,
                            octet_length(NEW.data))
                    RETURNING rev, pg_notify('domdata_changes', '')::text INTO v_rev, v_notified;
            ELSE
                INSERT INTO changes (rev, op, host, domid, uuid, userid, size)
                    VALUES (nextval('changes_rev'), 'store', NEW.host, NEW.domid, NEW.uuid, NEW.userid,
                            octet_length(NEW.data))
                    RETURNING rev, pg_notify('domdata_changes', '')::text INTO v_rev, v_notified;
            END IF;
            IF v_rev % 256 = 0 THEN
                PERFORM domdata_trim_changes(256, 65536);
            END IF;
            RETURN NULL;
        END $$""",
)

#: What records one change: the feed's lock (revisions in commit order), the
#: change row, the NOTIFY unless nobody follows (the listeners' lock got:
#: nobody can start following before this commit), and the writers' backstop
#: trim every 256th revision. ``domdata_put`` repeats it inline (see LOG_MIGRATION).
_RECORD: LiteralString = """
            IF NOT pg_try_advisory_xact_lock(1667788391, 0) THEN
                PERFORM pg_advisory_xact_lock(1667788391, 0);
            END IF;
            INSERT INTO changes (rev, op, host, domid, uuid, userid, size)
                VALUES (nextval('changes_rev'), {op}, {host}, {domid}, {uuid}, {userid}, {size})
                RETURNING rev, CASE WHEN NOT pg_try_advisory_xact_lock(1667788391, 2)
                                    THEN pg_notify('domdata_changes', '')::text END
                INTO v_rev, v_notified;
            IF v_rev % 256 = 0 THEN
                PERFORM domdata_trim_changes(256, 65536);
            END IF;"""

#: The one-step functions' domain lock, held to the end of the transaction, as
#: migration 2 takes it (its functions are restated below, not edited).
_DOMAIN_LOCK: LiteralString = """
            IF NOT pg_try_advisory_xact_lock(domdata_lock_key(p_host, p_domid)) THEN
                PERFORM domdata_lock_timeout(p_timeout_ms);
                PERFORM pg_advisory_xact_lock(domdata_lock_key(p_host, p_domid));
            END IF;"""

#: Schema migration 7: the changes recorded by the statements that write, not
#: by a row trigger, and no NOTIFY while nobody follows. ``domdata_log``
#: records one change; ``domdata_put`` and ``domdata_delete`` are restated
#: with their change, ``domdata_put`` with the recording written out (a
#: function call is a query more, on the path of every store).
LOG_MIGRATION: tuple[LiteralString, ...] = (
    "DROP TRIGGER userdata_changes ON userdata",
    "DROP FUNCTION domdata_record_change()",
    """CREATE FUNCTION domdata_log(
            p_op text, p_host text, p_domid bigint, p_uuid uuid, p_userid text, p_size integer)
        RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
        DECLARE
            v_rev bigint;
            v_notified text;
        BEGIN"""
    + _RECORD.format(
        op="p_op", host="p_host", domid="p_domid", uuid="p_uuid", userid="p_userid", size="p_size"
    )
    + """
            RETURN v_rev;
        END $$""",
    """CREATE OR REPLACE FUNCTION domdata_put(
            p_host text, p_domid bigint, p_userid text, p_data bytea, p_timeout_ms integer)
        RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
        DECLARE
            v_uuid uuid;
            v_rev bigint;
            v_notified text;
        BEGIN"""
    + _DOMAIN_LOCK
    + """
            INSERT INTO userdata (host, domid, uuid, userid, data)
                SELECT d.host, d.domid, d.uuid, p_userid, p_data FROM domains d
                WHERE d.host = p_host AND d.domid = p_domid
                ON CONFLICT (host, domid, uuid, userid) DO UPDATE SET data = excluded.data, boot = NULL
                RETURNING uuid INTO v_uuid;
            IF NOT FOUND THEN
                RETURN false;
            END IF;"""
    + _RECORD.format(
        op="'store'",
        host="p_host",
        domid="p_domid",
        uuid="v_uuid",
        userid="p_userid",
        size="octet_length(p_data)",
    )
    + """
            RETURN true;
        END $$""",
    """CREATE OR REPLACE FUNCTION domdata_delete(
            p_host text, p_domid bigint, p_userid text, p_timeout_ms integer)
        RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
        DECLARE
            v_uuid uuid;
        BEGIN"""
    + _DOMAIN_LOCK
    + """
            SELECT d.uuid INTO v_uuid FROM domains d WHERE d.host = p_host AND d.domid = p_domid;
            IF NOT FOUND THEN
                RETURN -1;
            END IF;
            DELETE FROM userdata u WHERE u.host = p_host AND u.domid = p_domid
                AND u.uuid = v_uuid AND u.userid = p_userid;
            IF NOT FOUND THEN
                RETURN 0;
            END IF;
            PERFORM domdata_log('delete', p_host, p_domid, v_uuid, p_userid, NULL);
            RETURN 1;
        END $$""",
)


#: What a statement that writes several items records them from: its rows,
#: sorted. The sort takes every row the write returns before the first is
#: recorded, so all its rows are locked before it takes the feed's lock; a
#: statement recording each row as it goes would hold the feed's lock while
#: it waits for the next row's writer, who may be waiting for the feed's lock
#: (a deadlock PostgreSQL ends by failing one of them). It is also the order
#: of their revisions.
SORTED: LiteralString = " ORDER BY host, domid, uuid, userid"


def logged(removal: LiteralString) -> LiteralString:
    """*removal*, a DELETE from ``userdata``, with each item it removes recorded
    as a change of the op given as its last parameter; its one row is how many
    it removed."""
    return (
        "WITH gone AS (" + removal + " RETURNING host, domid, uuid, userid)"
        " SELECT count(domdata_log(%s, host, domid, uuid, userid, NULL))"
        " FROM (SELECT * FROM gone" + SORTED + ") AS gone"
    )


def counted(cursor: psycopg.Cursor[Any]) -> int:
    """The count a recording statement answers with (``logged``'s, a destroy's, a move's)."""
    row = cursor.fetchone()
    assert row is not None
    return int(row[0])


_REPEATABLE = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
_NEWEST = "SELECT coalesce((SELECT max(rev) FROM changes), (SELECT upto FROM change_trimmed))"
_BOUNDS = (
    "SELECT (SELECT upto FROM change_trimmed), (SELECT min(rev) FROM changes),"
    " (SELECT max(rev) FROM changes),"
    " (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM changes_rev)"
)
_READ = "SELECT rev, op, host, domid, uuid::text, userid, size FROM changes WHERE rev > %s AND rev <= %s"
_BATCH = 1000
#: A reader trims what retention lets go when it starts, then every this many revisions it reads past.
TRIM_EVERY = 1024
_TRIM = "SELECT domdata_trim_changes(%s, 0)"
#: At most this many changes go per trim (one statement).
_TRIM_LIMIT = 100_000
#: Idle, re-read this often even without a notification.
_SAFETY = 5.0
#: A follower that lost its server tries to reconnect this long, then gives up.
RECONNECT_PATIENCE = 60.0


class PostgreSQLFeed:
    """The change feed of one PostgreSQL store: the cause of a removal, the
    retention, a listing with its revision, and followers on connections of
    their own."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._closing = Closing(session.url)

    @staticmethod
    def set_retention(conn: Connection, retention: Retention) -> None:
        conn.execute(
            "UPDATE change_retention SET changes = %s, seconds = %s", (retention.changes, retention.seconds)
        )

    def listing(
        self, items: Callable[[Connection], list[Item]], domids: Sequence[int], domain: object
    ) -> Listing:
        """``items(conn)`` and the revision they reflect, read in one snapshot."""
        with self._session.connection_for(domids, domain) as conn, conn.transaction():
            conn.execute(_REPEATABLE)
            listed = items(conn)
            row = conn.execute(_NEWEST).fetchone()
        assert row is not None
        return Listing(listed, int(row[0]))

    def changes(self, domid: int | None, since: int | None, follow: bool) -> Iterator[Change]:
        session = self._session
        domain = None if domid is None else (session.host, domid)
        reader = _Reader(session, self._closing, domain, follow)
        try:
            last = reader.start(since)
        except BaseException:
            reader.close()
            raise
        return reader.run(last)

    def close(self) -> None:
        """The store closes: every feed read from it ends."""
        self._closing.close()


class _Reader:
    """One follower's own connection, listening when it follows."""

    def __init__(
        self, session: Session, closing: Closing, domain: tuple[str, int] | None, follow: bool
    ) -> None:
        self._session = session
        self._closing = closing
        self._printable = session.url
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
            conn = self._session.connect()
        except psycopg.Error as exc:
            raise self._fail(exc) from exc
        try:
            if self._follow:
                conn.execute(_FOLLOWING)
                conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            conn.close()  # a server gone between the two: nothing is kept for the next try
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
                first = trimmed + 1 if oldest is None else oldest
                raise changes_lost(self._printable, last, first, allocated)
            # A range of revisions, not a LIMIT: without fresh statistics the
            # planner would sort the whole tail for each batch.
            upto = min(trimmed if newest is None else newest, last + _BATCH)
            rows = conn.execute(self._sql, (last, upto, *self._domain)).fetchall()
        return rows, max(upto, last)

    def _trim(self) -> None:
        assert self._conn is not None
        self._conn.execute(_TRIM, (_TRIM_LIMIT,))

    def start(self, since: int | None) -> int:
        try:
            self._trim()
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
        closing = self._closing
        try:
            while True:
                closing.check()
                try:
                    rows, upto = self._read(last)
                except psycopg.OperationalError:
                    if not self._follow:
                        raise
                    self._reconnect()
                    continue
                for rev, op, host, domid, uuid, userid, size in rows:
                    yield Change(rev, op, host, domid, uuid, userid, size)
                    closing.check()
                if upto // TRIM_EVERY > last // TRIM_EVERY:
                    # Best effort: a lost connection shows at the next read, which reconnects.
                    with suppress(psycopg.OperationalError):
                        self._trim()
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
        """Until a notification (or the connection) has something to say, or the store closes.

        Notifications that came during the last read are in psycopg's backlog:
        take them first. Then sleep in poll(2) on the socket: psycopg's own
        wait wakes every 100 ms, which an idle follower would pay for."""
        conn = self._conn
        assert conn is not None
        if list(conn.notifies(timeout=0)):
            return
        poller = select.poll()
        poller.register(conn.pgconn.socket, select.POLLIN)
        poller.register(self._closing.fd(), select.POLLIN)
        poller.poll(int(_SAFETY * 1000))

    def _reconnect(self) -> None:
        """The server went away: connect and listen again; the caller reads on
        from its last revision, so nothing is missed and nothing repeated."""
        self.close()
        deadline = time.monotonic() + RECONNECT_PATIENCE
        delay = 0.05
        while True:
            self._closing.check()
            try:
                self._connect()
                return
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
            self._closing.sleep(delay)
            delay = min(delay * 2, 1.0)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
