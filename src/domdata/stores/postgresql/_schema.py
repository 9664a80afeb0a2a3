"""The PostgreSQL schema: ordered migrations, applied once under an advisory lock.

``schema_version`` holds one row per migration applied. A store opening a
database checks the highest version with one query; only when it is behind
does it take the migration lock and apply what is missing, so several
processes using a fresh database at once create it exactly once.
"""

from __future__ import annotations

import psycopg

from ..._errors import StoreUnavailable
from ._changes import LOG_MIGRATION, TRIM_MIGRATION
from ._changes import MIGRATION as CHANGES_MIGRATION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, LiteralString

#: pg_advisory_xact_lock(int, int) keys of the migration lock ("domd", 0). The
#: two-key form lives apart from the bigint keys of the domain locks.
MIGRATION_LOCK = (0x646F6D64, 0)

# Each entry is one migration; its version is its position + 1. Never edit an
# entry once released: append a new one.
MIGRATIONS: tuple[tuple[LiteralString, ...], ...] = (
    # 1: the cluster-wide domain table and the items, both keyed by host.
    (
        """CREATE TABLE domains (
            host text NOT NULL,
            domid bigint NOT NULL CHECK (domid BETWEEN 0 AND 4294967295),
            uuid uuid NOT NULL,
            name text,
            PRIMARY KEY (host, domid),
            UNIQUE (host, name))""",
        "CREATE INDEX domains_uuid ON domains (host, uuid)",
        """CREATE TABLE userdata (
            host text NOT NULL,
            domid bigint NOT NULL CHECK (domid BETWEEN 0 AND 4294967295),
            uuid uuid NOT NULL,
            userid text NOT NULL,
            data bytea NOT NULL CHECK (octet_length(data) > 0),
            PRIMARY KEY (host, domid, uuid, userid))""",
    ),
    # 2: the domain lock's key, and the calls that lock, check and act in one
    # round trip. They are VOLATILE plpgsql: each statement in them takes a new
    # snapshot, so what follows the lock sees every commit made before it.
    # They try the lock before waiting for it: plpgsql evaluates an IF
    # condition without the executor, a PERFORM is a whole query. That
    # preamble is written out in each function on purpose: a call to a
    # shared plpgsql function would cost each call another executor round.
    (
        """CREATE FUNCTION domdata_lock_key(p_host text, p_domid bigint) RETURNS bigint
            LANGUAGE sql IMMUTABLE PARALLEL SAFE
            AS $$ SELECT (hashtext(p_host)::bigint << 32) | p_domid $$""",
        # lock_timeout is set for the session, and only when the caller's timeout
        # changes: setting it for every wait would cost a query more.
        """CREATE FUNCTION domdata_lock_timeout(p_timeout_ms integer) RETURNS void
            LANGUAGE plpgsql VOLATILE AS $$
            BEGIN
                IF current_setting('domdata.lock_timeout_ms', true) IS DISTINCT FROM p_timeout_ms::text THEN
                    PERFORM set_config('lock_timeout', p_timeout_ms::text, false),
                        set_config('domdata.lock_timeout_ms', p_timeout_ms::text, false);
                END IF;
            END $$""",
        """CREATE FUNCTION domdata_lock(p_host text, p_domid bigint, p_timeout_ms integer) RETURNS void
            LANGUAGE plpgsql VOLATILE AS $$
            BEGIN
                IF NOT pg_try_advisory_lock(domdata_lock_key(p_host, p_domid)) THEN
                    PERFORM domdata_lock_timeout(p_timeout_ms);
                    PERFORM pg_advisory_lock(domdata_lock_key(p_host, p_domid));
                END IF;
            END $$""",
        # The item, NULL when there is none; no_data_found when there is no domain.
        """CREATE FUNCTION domdata_get(p_host text, p_domid bigint, p_userid text, p_timeout_ms integer)
            RETURNS bytea LANGUAGE plpgsql VOLATILE AS $$
            DECLARE
                v_data bytea;
            BEGIN
                IF NOT pg_try_advisory_xact_lock(domdata_lock_key(p_host, p_domid)) THEN
                    PERFORM domdata_lock_timeout(p_timeout_ms);
                    PERFORM pg_advisory_xact_lock(domdata_lock_key(p_host, p_domid));
                END IF;
                SELECT u.data INTO v_data FROM domains d LEFT JOIN userdata u
                    ON u.host = d.host AND u.domid = d.domid AND u.uuid = d.uuid AND u.userid = p_userid
                    WHERE d.host = p_host AND d.domid = p_domid;
                IF NOT FOUND THEN
                    RAISE EXCEPTION 'no domain % on host %', p_domid, p_host USING ERRCODE = 'no_data_found';
                END IF;
                RETURN v_data;
            END $$""",
        # Whether the domain exists (the item is written only if it does).
        """CREATE FUNCTION domdata_put(
                p_host text, p_domid bigint, p_userid text, p_data bytea, p_timeout_ms integer)
            RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
            BEGIN
                IF NOT pg_try_advisory_xact_lock(domdata_lock_key(p_host, p_domid)) THEN
                    PERFORM domdata_lock_timeout(p_timeout_ms);
                    PERFORM pg_advisory_xact_lock(domdata_lock_key(p_host, p_domid));
                END IF;
                INSERT INTO userdata (host, domid, uuid, userid, data)
                    SELECT d.host, d.domid, d.uuid, p_userid, p_data FROM domains d
                    WHERE d.host = p_host AND d.domid = p_domid
                    ON CONFLICT (host, domid, uuid, userid) DO UPDATE SET data = excluded.data;
                RETURN FOUND;
            END $$""",
        # -1: no domain; 0: no item; 1: the item was deleted.
        """CREATE FUNCTION domdata_delete(p_host text, p_domid bigint, p_userid text, p_timeout_ms integer)
            RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
            DECLARE
                v_uuid uuid;
            BEGIN
                IF NOT pg_try_advisory_xact_lock(domdata_lock_key(p_host, p_domid)) THEN
                    PERFORM domdata_lock_timeout(p_timeout_ms);
                    PERFORM pg_advisory_xact_lock(domdata_lock_key(p_host, p_domid));
                END IF;
                SELECT d.uuid INTO v_uuid FROM domains d WHERE d.host = p_host AND d.domid = p_domid;
                IF NOT FOUND THEN
                    RETURN -1;
                END IF;
                DELETE FROM userdata u WHERE u.host = p_host AND u.domid = p_domid
                    AND u.uuid = v_uuid AND u.userid = p_userid;
                RETURN CASE WHEN FOUND THEN 1 ELSE 0 END;
            END $$""",
    ),
    # 3: the domain source that governs each host's part of the store.
    ("CREATE TABLE sources (host text PRIMARY KEY, source text NOT NULL)",),
    # 4: the change feed (see _changes).
    CHANGES_MIGRATION,
    # 5: the boot of its host an item was written in (the boot id), for domains
    # that die with the host; NULL: no boot. Not part of the key: a write in a
    # later boot replaces the item; not indexed (reap reads it in one scan of
    # the host's items, as it reads their incarnations). The one-step calls
    # serve managed domains only, which die with no host: the item they write
    # has no boot.
    (
        "ALTER TABLE userdata ADD COLUMN boot uuid",
        """CREATE OR REPLACE FUNCTION domdata_put(
                p_host text, p_domid bigint, p_userid text, p_data bytea, p_timeout_ms integer)
            RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
            BEGIN
                IF NOT pg_try_advisory_xact_lock(domdata_lock_key(p_host, p_domid)) THEN
                    PERFORM domdata_lock_timeout(p_timeout_ms);
                    PERFORM pg_advisory_xact_lock(domdata_lock_key(p_host, p_domid));
                END IF;
                INSERT INTO userdata (host, domid, uuid, userid, data)
                    SELECT d.host, d.domid, d.uuid, p_userid, p_data FROM domains d
                    WHERE d.host = p_host AND d.domid = p_domid
                    ON CONFLICT (host, domid, uuid, userid) DO UPDATE SET data = excluded.data, boot = NULL;
                RETURN FOUND;
            END $$""",
    ),
    # 6: a cheaper change feed for writers (see _changes).
    TRIM_MIGRATION,
    # 7: changes recorded by the writing statements, not a trigger; no NOTIFY
    # while nobody follows (see _changes).
    LOG_MIGRATION,
)
SCHEMA_VERSION = len(MIGRATIONS)

_CURRENT = "SELECT max(version) FROM schema_version"


def ensure_schema(conn: psycopg.Connection[Any], url: str, upto: int = SCHEMA_VERSION) -> None:
    """Bring the database to schema version *upto* (autocommit connection)."""
    try:
        version = conn.execute(_CURRENT).fetchone()
    except psycopg.errors.UndefinedTable:
        version = None
    if version is not None and version[0] is not None and version[0] >= upto:
        _refuse_newer(version[0], url)
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", MIGRATION_LOCK)
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_version (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        row = conn.execute(_CURRENT).fetchone()
        current = 0 if row is None or row[0] is None else row[0]
        _refuse_newer(current, url)
        if current < WRITERS_RECORD <= upto:
            _refuse_older_writers(conn, url)
        for version_number in range(current + 1, upto + 1):
            for statement in MIGRATIONS[version_number - 1]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version_number,))


#: From this schema version domdata's own statements record the changes (no trigger).
WRITERS_RECORD = 7
# The connections of a domdata process: its pool's and its lock keepers' (_session).
_OLDER_WRITERS = """SELECT pid FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
    AND (application_name = 'domdata' OR application_name LIKE 'domdata-keeper %') ORDER BY pid"""


def _refuse_older_writers(conn: psycopg.Connection[Any], url: str) -> None:
    """Before the store moves to WRITERS_RECORD: a domdata process that opened
    it at an older version and still runs (``domdata watch``) would go on
    writing without recording its changes. No process of this version can be
    connected yet: it would have upgraded the store."""
    pids = [str(row[0]) for row in conn.execute(_OLDER_WRITERS)]
    if pids:
        raise StoreUnavailable(
            f"domdata processes of an older version use this store (server pids {', '.join(pids)}):"
            f" once upgraded to schema version {WRITERS_RECORD} their writes would be missing from"
            " the change feed; stop them (domdata watch too), then open it again (nothing was changed)",
            store=url,
        )


def _refuse_newer(version: int, url: str) -> None:
    if version > SCHEMA_VERSION:
        raise StoreUnavailable(
            f"schema version {version} is newer than this domdata knows ({SCHEMA_VERSION}): upgrade domdata",
            store=url,
        )
