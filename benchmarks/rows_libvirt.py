"""libvirt row: ``reap`` of 100,000 incarnations with 10% dead, SQLite store.

The live set is real: 90,000 running domains of libvirt's test driver
(``test:///default`` in this process: ~9 s to start, ~320 MB). Every item is
stored through ``Context.store`` while its domain runs (``durable=False`` to
fill the store in seconds), and the 10,000 that die are destroyed through
libvirt, fresh ones each round. The reap itself runs on a durable context,
as ``domdata watch`` does. Its baseline does the same job by hand on a copy of
the same database: list libvirt's domains, one ``SELECT DISTINCT``, one
transaction of DELETEs, no per-domain locks. Target (issue 4): <= 1 s.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from _table import Row, compare

import domdata

URI = "test:///default"
DOMAINS = 100_000
DEAD = DOMAINS // 10
ROUNDS = 5
REAP_LIMIT = 1.0
_XML = "<domain type='test'><name>bench-{}</name><memory>1024</memory><os><type>hvm</type></os></domain>"


class _Domains:
    """Starts test-driver domains with names that never repeat."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._next = 0

    def start(self, count: int) -> list[Any]:
        first, self._next = self._next, self._next + count
        return [self.conn.createXML(_XML.format(n), 0) for n in range(first, self._next)]


def _store_all(ctx: domdata.Context, doms: list[Any], item: bytes) -> None:
    # A listing first, as a toolstack makes one: libvirt's lookup by ID is a
    # linear search, and the source then finds each domid by its uuid.
    ctx.domains.domains()
    for dom in doms:
        ctx.store(dom.ID(), "libvirt-xml", item)


def _raw_live(conn: Any, libvirt: Any) -> set[tuple[int, str]]:
    listed = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
    return {(dom.ID(), dom.UUIDString()) for dom in listed}


def _raw_reap(path: str, conn: Any, libvirt: Any) -> int:
    """What a hand-written reaper does: live set, stored set, one DELETE transaction."""
    live = _raw_live(conn, libvirt)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous = FULL")
        stored = set(db.execute("SELECT DISTINCT domid, uuid FROM userdata").fetchall())
        dead = stored - live
        db.execute("BEGIN IMMEDIATE")
        db.executemany("DELETE FROM userdata WHERE domid = ? AND uuid = ?", dead)
        db.execute("COMMIT")
        return len(dead)
    finally:
        db.close()


def _copy(source: str, target: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(target + suffix).unlink(missing_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def rows() -> list[Row]:
    import libvirt

    libvirt.registerErrorHandler(lambda *_: None, None)
    conn = libvirt.open(URI)
    item = os.urandom(512)
    # The real disk, not tmpfs: the reap's commit pays for fsync as users do.
    with tempfile.TemporaryDirectory(dir=os.environ.get("DOMDATA_BENCH_DIR")) as tmp:
        ours_path, raw_path = f"{tmp}/ours.db", f"{tmp}/raw.db"
        domains = _Domains(conn)
        with domdata.open(f"sqlite://{ours_path}", f"libvirt:{URI}", durable=False) as filler:
            _store_all(filler, domains.start(DOMAINS - DEAD), item)
            mine: list[float] = []
            raw: list[float] = []
            with domdata.open(f"sqlite://{ours_path}", f"libvirt:{URI}") as ctx:
                for _ in range(ROUNDS):
                    doomed = domains.start(DEAD)
                    _store_all(filler, doomed, item)
                    for dom in doomed:
                        dom.destroy()
                    _copy(ours_path, raw_path)
                    start = time.perf_counter()
                    removed = _raw_reap(raw_path, conn, libvirt)
                    raw.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    report = ctx.reap()
                    mine.append(time.perf_counter() - start)
                    if (len(report.incarnations), report.items, removed) != (DEAD, DEAD, DEAD):
                        raise AssertionError(f"reap removed {report.items} items, raw {removed}")
                # Where a reap's time goes: the live set alone, against the binding's floor.
                listing = compare(
                    f"libvirt live set, {DOMAINS - DEAD:,} domains",
                    ctx.domains.incarnations,
                    "raw: listAllDomains + ID + UUIDString",
                    lambda: _raw_live(conn, libvirt),
                    number=1,
                    repeat=ROUNDS,
                )
    conn.close()
    reap = Row(
        "libvirt reap, 100,000 incarnations, 10% dead",
        mine,
        "raw: list + SELECT DISTINCT + 1 DELETE txn",
        raw,
        limit=REAP_LIMIT,
    )
    return [reap, listing]
