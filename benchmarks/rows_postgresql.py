"""PostgreSQL rows: domdata's public API against raw psycopg on the same table.

Targets (issue 5): durable store and retrieve <= 1.3x a raw upsert / select
(autocommit, synchronous_commit on); destroy and list at 100,000 domains <= 2x
their cost at 100. A throw-away server is started as the tests start theirs
(unix socket, on the real disk); without server binaries there are no rows.
"""

from __future__ import annotations

import itertools
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from _table import Row, compare, destroy_and_list, growth_rows

import domdata

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.kits.store_postgresql import Server, bindir, unavailable

HOST = "bench"
_UPSERT = (
    "INSERT INTO userdata (host, domid, uuid, userid, data) VALUES (%s, %s, %s, %s, %s)"
    " ON CONFLICT (host, domid, uuid, userid) DO UPDATE SET data = excluded.data"
)
_SELECT = "SELECT data FROM userdata WHERE host = %s AND domid = %s AND uuid = %s AND userid = %s"


def _alternating(size: int) -> Callable[[], bytes]:
    payloads = itertools.cycle([os.urandom(size), os.urandom(size)])
    return lambda: next(payloads)


def _store_and_retrieve(server: Server, size: int) -> list[Row]:
    import psycopg

    url = server.create_database(f"bench{size}")
    ours, theirs = _alternating(size), _alternating(size)
    label = f"{size // 1024} KiB"
    raw_key = (HOST, 1_000_000, str(uuid.uuid4()), "xl")
    with domdata.open(url, host=HOST) as ctx, psycopg.connect(url, autocommit=True) as raw:
        dom = ctx.managed.create()
        ctx.store(dom.domid, "xl", ours())
        raw.execute(_UPSERT, (*raw_key, theirs()))
        return [
            compare(
                f"postgresql store {label} (durable)",
                lambda: ctx.store(dom.domid, "xl", ours()),
                "raw upsert, synchronous_commit=on",
                lambda: raw.execute(_UPSERT, (*raw_key, theirs())),
                number=50,
                target=1.3,
            ),
            compare(
                f"postgresql retrieve {label}",
                lambda: ctx.retrieve(dom.domid, "xl"),
                "raw select",
                lambda: raw.execute(_SELECT, raw_key).fetchone(),
                number=1000,
                target=1.3,
            ),
        ]


def _timings_at(server: Server, domains: int) -> dict[str, list[float]]:
    import psycopg

    url = server.create_database(f"scale{domains}")
    with domdata.open(url, host=HOST) as ctx:
        # Fill the tables directly: 100,000 durable creations would only measure fsync.
        with psycopg.connect(url, autocommit=True) as raw:
            raw.execute(
                "INSERT INTO domains (host, domid, uuid) SELECT %s, n, gen_random_uuid()"
                " FROM generate_series(1000, 999 + %s) n",
                (HOST, domains),
            )
            raw.execute(
                "INSERT INTO userdata (host, domid, uuid, userid, data)"
                " SELECT host, domid, uuid, 'xl', decode(repeat('00', 512), 'hex') FROM domains"
            )
            raw.execute("VACUUM ANALYZE")
        return destroy_and_list(ctx, 1000)


def _scaling(server: Server) -> list[Row]:
    return growth_rows("postgresql", _timings_at(server, 100), _timings_at(server, 100_000))


def rows() -> list[Row]:
    why = unavailable()
    binaries = bindir()
    if why is not None or binaries is None:
        print(f"no postgresql rows: {why}", file=sys.stderr)
        return []
    server = Server(binaries)
    try:
        return [
            *_store_and_retrieve(server, 1024),
            *_store_and_retrieve(server, 64 * 1024),
            *_scaling(server),
        ]
    finally:
        server.remove()
