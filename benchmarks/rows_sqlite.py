"""SQLite rows: domdata's public API against raw sqlite3 on the same schema.

Targets (issue 2): durable store <= 1.3x a raw synchronous=FULL upsert;
retrieve <= 2.5x a raw select; destroy and list at 100,000 domains <= 2x
their cost at 100.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from _table import Row, compare, destroy_and_list, growth_rows

import domdata
from domdata.stores.sqlite import _SELECT, _UPSERT, MIGRATIONS


def _raw(path: Path, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    for migration in MIGRATIONS:
        for statement in migration:
            db.execute(statement)
    return db


def _alternating(size: int) -> Callable[[], bytes]:
    """Two payloads in turn: SQLite skips a write of identical bytes (no fsync)."""
    payloads = itertools.cycle([os.urandom(size), os.urandom(size)])
    return lambda: next(payloads)


def _store_and_retrieve(workdir: Path, size: int) -> list[Row]:
    data = os.urandom(size)
    ours, theirs = _alternating(size), _alternating(size)
    label = f"{size // 1024} KiB"
    raw = _raw(workdir / f"raw{size}.db", "FULL")
    raw_uuid = str(uuid.uuid4())
    with domdata.open(f"sqlite://{workdir / f'dd{size}.db'}") as ctx:
        dom = ctx.managed.create()
        ctx.store(dom.domid, "xl", data)
        raw.execute(_UPSERT, (1, raw_uuid, "xl", data))
        rows = [
            compare(
                f"sqlite store {label} (durable)",
                lambda: ctx.store(dom.domid, "xl", ours()),
                "raw upsert, synchronous=FULL",
                lambda: raw.execute(_UPSERT, (1, raw_uuid, "xl", theirs())),
                number=50,
                target=1.3,
            ),
            compare(
                f"sqlite retrieve {label}",
                lambda: ctx.retrieve(dom.domid, "xl"),
                "raw select",
                lambda: raw.execute(_SELECT, (1, raw_uuid, "xl")).fetchone(),
                number=2000,
                target=2.5,
            ),
        ]
    raw.close()
    return rows


def _populate(ctx: domdata.Context, path: Path, domains: int) -> None:
    # Fill the tables directly: creating 100,000 domains one durable call at a
    # time would only measure fsync.
    db = sqlite3.connect(path)
    with db:
        db.executemany(
            "INSERT INTO domains (domid, uuid, name) VALUES (?, ?, NULL)",
            ((n, str(uuid.uuid4())) for n in range(1000, 1000 + domains)),
        )
        db.execute(
            "INSERT INTO userdata (domid, uuid, userid, data)"
            " SELECT domid, uuid, 'xl', zeroblob(512) FROM domains"
        )
    db.close()


def _timings_at(workdir: Path, domains: int) -> dict[str, list[float]]:
    path = workdir / f"scale{domains}.db"
    with domdata.open(f"sqlite://{path}") as ctx:
        _populate(ctx, path, domains)
        return destroy_and_list(ctx, 1000)


def _scaling(workdir: Path) -> list[Row]:
    """The same calls at 100 and at 100,000 domains: the ratio is the growth."""
    return growth_rows("sqlite", _timings_at(workdir, 100), _timings_at(workdir, 100_000))


def rows() -> list[Row]:
    # Durable rows must pay for fsync as users do: where the temp dir is a
    # tmpfs, point DOMDATA_BENCH_DIR at a directory on a real disk.
    with tempfile.TemporaryDirectory(dir=os.environ.get("DOMDATA_BENCH_DIR")) as tmp:
        workdir = Path(tmp)
        return [
            *_store_and_retrieve(workdir, 1024),
            *_store_and_retrieve(workdir, 64 * 1024),
            *_scaling(workdir),
        ]
