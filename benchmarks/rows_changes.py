"""Change feed rows (issue 13), per store with a feed.

- durable store with the feed <= 1.1x the same store without it (SQLite: the
  same schema with its change triggers dropped; PostgreSQL: the one-step
  write as it was before the feed), timed in the same run;
- commit-to-delivery latency for a follower in another process: median under
  20 ms, p99 under 100 ms (the baseline column is the durable store call);
- a follower catching up on 100,000 changes, in changes per second, against
  a raw SELECT of the same rows;
- a follower's idle CPU, in µs of CPU per second of waiting;
- PostgreSQL: 4 processes storing at once, with the feed (whose revisions
  are assigned in commit order under one lock) against without it.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _table import Row, compare, per_call

import domdata

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.kits.store_postgresql import Server, bindir, unavailable

LATENCY_SAMPLES = 200
CATCH_UP = 100_000
IDLE_SECONDS = 5.0
CONCURRENT_WRITERS = 4
CONCURRENT_CALLS = 200
fork = multiprocessing.get_context("fork")


def _alternating(size: int) -> Callable[[], bytes]:
    """Two payloads in turn: SQLite skips a write of identical bytes (no fsync)."""
    payloads = itertools.cycle([os.urandom(size), os.urandom(size)])
    return lambda: next(payloads)


def _store_overhead(backend: str, with_feed: str, without_feed: str, host: str | None = None) -> Row:
    ours, theirs = _alternating(1024), _alternating(1024)
    with domdata.open(with_feed, host=host) as fed, domdata.open(without_feed, host=host) as bare:
        fed_dom, bare_dom = fed.managed.create(), bare.managed.create()
        # One call each in turn: in rounds of 50 the disk's drift over seconds
        # decided the ratio (0.96x to 1.29x for SQLite within an hour).
        return compare(
            f"{backend} store 1 KiB (durable), with the feed",
            lambda: fed.store(fed_dom.domid, "xl", ours()),
            "same store without the feed",
            lambda: bare.store(bare_dom.domid, "xl", theirs()),
            number=1,
            repeat=351,
            target=1.1,
        )


def _follower(url: str, since: int, count: int, out: Any) -> None:
    with domdata.open(url) as ctx:
        for n, change in enumerate(ctx.changes(since=since, follow=True), 1):
            out.send((change.rev, time.monotonic()))
            if n == count:
                break
    out.close()


def _latency(backend: str, url: str) -> list[Row]:
    """A follower in another process; the writer notes when each store returned
    (CLOCK_MONOTONIC is one clock for every process of the machine)."""
    payload = _alternating(1024)
    with domdata.open(url) as ctx:
        dom = ctx.managed.create()
        since = ctx.list().rev
        receive, send = fork.Pipe(duplex=False)
        follower = fork.Process(target=_follower, args=(url, since, LATENCY_SAMPLES, send))
        follower.start()
        time.sleep(1.0)  # let it start following
        committed: dict[int, float] = {}
        calls: list[float] = []
        for n in range(LATENCY_SAMPLES):
            time.sleep(random.uniform(0.002, 0.02))
            start = time.monotonic()
            ctx.store(dom.domid, "xl", payload())
            committed[since + n + 1] = time.monotonic()
            calls.append(committed[since + n + 1] - start)
        delays = []
        for _ in range(LATENCY_SAMPLES):
            rev, seen = receive.recv()
            delays.append(max(0.0, seen - committed[rev]))
        follower.join()
    p99 = statistics.quantiles(delays, n=100)[98]
    return [
        Row(f"{backend} follower latency (median)", delays, "durable store call", calls, limit=0.020),
        Row(f"{backend} follower latency (p99)", [p99], "durable store call", calls, limit=0.100),
    ]


def _idle_cpu(backend: str, url: str) -> Row:
    """CPU used by a follower with nothing to deliver, from /proc/<pid>/schedstat."""
    with domdata.open(url) as ctx:
        since = ctx.list().rev
    _receive, send = fork.Pipe(duplex=False)
    follower = fork.Process(target=_follower, args=(url, since, 1, send))
    follower.start()
    time.sleep(1.0)

    def cpu() -> float:
        # schedstat's first field: nanoseconds on a CPU (stat's ticks are 10 ms).
        return int(Path(f"/proc/{follower.pid}/schedstat").read_text().split()[0]) / 1e9

    before, start = cpu(), time.monotonic()
    time.sleep(IDLE_SECONDS)
    used, waited = cpu() - before, time.monotonic() - start
    follower.kill()
    follower.join()
    return Row(
        f"{backend} idle follower, CPU per second", [used / waited], "one busy core", [1.0], limit=0.001
    )


def _catch_up(backend: str, url: str, fill: Callable[[], None], raw: Callable[[], object]) -> Row:
    fill()
    with domdata.open(url) as ctx:
        mine = [per_call(lambda: sum(1 for _ in ctx.changes()), 1) / CATCH_UP for _ in range(3)]
    theirs = [per_call(raw, 1) / CATCH_UP for _ in range(3)]
    rate = 1 / statistics.median(mine)
    return Row(f"{backend} catch up 100,000 changes ({rate:,.0f}/s)", mine, "raw select, per change", theirs)


def _sqlite_rows(workdir: Path) -> list[Row]:
    with_feed = f"sqlite://{workdir / 'fed.db'}"
    without_feed = f"sqlite://{workdir / 'bare.db'}"
    domdata.open(without_feed).close()
    with sqlite3.connect(workdir / "bare.db") as db:
        for trigger in ("userdata_stored", "userdata_replaced", "userdata_deleted"):
            db.execute(f"DROP TRIGGER {trigger}")
    catch_up = f"sqlite://{workdir / 'catchup.db'}"

    def fill() -> None:
        with domdata.open(catch_up) as ctx:
            dom = ctx.managed.create()
        with sqlite3.connect(workdir / "catchup.db") as db:
            db.executemany(
                "INSERT INTO userdata (domid, uuid, userid, data) VALUES (?, ?, ?, x'00')",
                ((dom.domid, dom.uuid, f"u{n}") for n in range(CATCH_UP)),
            )

    def raw() -> object:
        with sqlite3.connect(workdir / "catchup.db") as db:
            return db.execute(
                "SELECT rev, op, domid, uuid, userid, size FROM changes ORDER BY rev"
            ).fetchall()

    return [
        _store_overhead("sqlite", with_feed, without_feed),
        *_latency("sqlite", f"sqlite://{workdir / 'latency.db'}"),
        _idle_cpu("sqlite", f"sqlite://{workdir / 'idle.db'}"),
        _catch_up("sqlite", catch_up, fill, raw),
    ]


def _concurrent_writer(url: str, domid: int, start: Any, out: Any) -> None:
    payload = _alternating(1024)
    with domdata.open(url, host="bench") as ctx:
        start.wait()
        began = time.perf_counter()
        for _ in range(CONCURRENT_CALLS):
            ctx.store(domid, "xl", payload())
        out.send(time.perf_counter() - began)


def _concurrent(url: str) -> float:
    """Seconds per store, 4 processes storing at once (each its own domain)."""
    with domdata.open(url, host="bench") as ctx:
        doms = [ctx.managed.create() for _ in range(CONCURRENT_WRITERS)]
    start = fork.Event()
    pipes = [fork.Pipe(duplex=False) for _ in doms]
    writers = [
        fork.Process(target=_concurrent_writer, args=(url, d.domid, start, send))
        for d, (_, send) in zip(doms, pipes, strict=True)
    ]
    for writer in writers:
        writer.start()
    start.set()
    took = max(receive.recv() for receive, _ in pipes)
    for writer in writers:
        writer.join()
    return float(took) / (CONCURRENT_WRITERS * CONCURRENT_CALLS)


#: The store's one-step write as it was before it recorded changes (schema
#: migration 5): the same store without the feed.
_PUT_WITHOUT_FEED = """CREATE OR REPLACE FUNCTION domdata_put(
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
    END $$"""


def _postgresql_rows(server: Server) -> list[Row]:
    import psycopg

    with_feed, without_feed = server.create_database("fed"), server.create_database("bare")
    domdata.open(without_feed, host="bench").close()
    with psycopg.connect(without_feed, autocommit=True) as conn:
        conn.execute(_PUT_WITHOUT_FEED)
    catch_up = server.create_database("catchup")

    def fill() -> None:
        with domdata.open(catch_up, host="bench") as ctx:
            dom = ctx.managed.create()
        with psycopg.connect(catch_up, autocommit=True) as conn:
            conn.execute(
                "SELECT count(domdata_log('store', 'bench', %s, %s, 'u' || n, 1))"
                " FROM generate_series(1, %s) n",
                (dom.domid, dom.uuid, CATCH_UP),
            )

    def raw() -> object:
        with psycopg.connect(catch_up, autocommit=True) as conn:
            return conn.execute(
                "SELECT rev, op, host, domid, uuid, userid, size FROM changes ORDER BY rev"
            ).fetchall()

    concurrent_fed = [_concurrent(with_feed) for _ in range(3)]
    concurrent_bare = [_concurrent(without_feed) for _ in range(3)]
    return [
        _store_overhead("postgresql", with_feed, without_feed, host="bench"),
        Row(
            f"postgresql store, {CONCURRENT_WRITERS} processes at once, with the feed",
            concurrent_fed,
            "same without the feed",
            concurrent_bare,
        ),
        *_latency("postgresql", server.create_database("latency")),
        _idle_cpu("postgresql", server.create_database("idle")),
        _catch_up("postgresql", catch_up, fill, raw),
    ]


def rows() -> list[Row]:
    # Durable rows must pay for fsync as users do: where the temp dir is a
    # tmpfs, point DOMDATA_BENCH_DIR at a directory on a real disk.
    with tempfile.TemporaryDirectory(dir=os.environ.get("DOMDATA_BENCH_DIR")) as tmp:
        found = _sqlite_rows(Path(tmp))
    why = unavailable()
    binaries = bindir()
    if why is not None or binaries is None:
        print(f"no postgresql feed rows: {why}", file=sys.stderr)
        return found
    server = Server(binaries)
    try:
        return found + _postgresql_rows(server)
    finally:
        server.remove()
