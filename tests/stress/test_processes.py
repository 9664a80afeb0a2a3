"""Concurrency and crashes with real processes, on every store (managed domains).

- 8 processes x 200 locked read-modify-write increments lose no update;
- 200 stores racing 200 destroys leave no item behind for a dead domain,
  whether each store is a single call (a store's one-step path) or made
  inside ``ctx.lock()`` (the contract's general path);
- a writer killed with SIGKILL at 200 random instants never leaves a torn,
  empty or unknown version visible.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import signal
from pathlib import Path
from typing import Any

import pytest

import domdata
from tests.kits import STORE_KITS, StoreKit

WORKERS = 8
INCREMENTS = 200
RACES = 200
KILLS = 200

# Forked children open their own context; the parent holds none across a fork.
fork = multiprocessing.get_context("fork")


pytestmark = pytest.mark.slow


@pytest.fixture(params=sorted(STORE_KITS))
def url(request: pytest.FixtureRequest, tmp_path: Path, kits: None) -> str:
    kit: StoreKit = STORE_KITS[request.param]
    return kit.url(tmp_path)


def _create(url: str, count: int) -> list[domdata.Domain]:
    with domdata.open(url) as ctx:
        return [ctx.managed.create() for _ in range(count)]


# -- lost updates -----------------------------------------------------------------


def _increment(url: str, domid: int, start: Any) -> None:
    with domdata.open(url) as ctx:
        start.wait()
        for _ in range(INCREMENTS):
            with ctx.lock(domid):
                value = int(ctx.retrieve(domid, "counter") or b"0")
                ctx.store(domid, "counter", str(value + 1).encode())


def test_locked_increments_from_many_processes_lose_nothing(url: str) -> None:
    (dom,) = _create(url, 1)
    start = fork.Event()
    workers = [fork.Process(target=_increment, args=(url, dom.domid, start)) for _ in range(WORKERS)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=300)
        assert worker.exitcode == 0
    with domdata.open(url) as ctx:
        assert ctx.retrieve(dom.domid, "counter") == str(WORKERS * INCREMENTS).encode()


# -- store racing destroy -----------------------------------------------------------


def _racer(url: str, role: str, domids: list[int], barrier: Any) -> None:
    with domdata.open(url) as ctx:
        for domid in domids:
            barrier.wait()
            if role == "destroy":
                ctx.destroy(domid)
                continue
            for n in range(3):
                try:
                    if role == "store in lock":
                        with ctx.lock(domid):
                            ctx.store(domid, f"item{n}", b"written while the domain dies")
                    else:
                        ctx.store(domid, f"item{n}", b"written while the domain dies")
                except domdata.DomainNotFound:
                    break


@pytest.mark.parametrize("storer", ["store", "store in lock"])
def test_store_racing_destroy_never_leaves_data_for_a_dead_domain(url: str, storer: str) -> None:
    domains = _create(url, RACES)
    domids = [d.domid for d in domains]
    barrier = fork.Barrier(2)
    racers = [fork.Process(target=_racer, args=(url, role, domids, barrier)) for role in (storer, "destroy")]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=300)
        assert racer.exitcode == 0
    with domdata.open(url) as ctx:
        assert ctx.list() == []
        assert ctx.domains.domains() == []
        assert ctx.reap(dry_run=True).incarnations == []


# -- SIGKILL during store -------------------------------------------------------------


def _version(n: int) -> bytes:
    # Sizes vary so that a torn write of one version over another shows.
    body = hashlib.sha256(str(n).encode()).digest() * (64 + n % 512)
    return b"%d:%s:" % (n, hashlib.sha256(body).hexdigest().encode()) + body


def _check(data: bytes) -> int:
    number, digest, body = data.split(b":", 2)
    assert hashlib.sha256(body).hexdigest().encode() == digest, "torn item"
    assert data == _version(int(number))
    return int(number)


def _writer(url: str, domid: int, first: int) -> None:
    with domdata.open(url) as ctx:
        n = first
        while True:
            ctx.store(domid, "versions", _version(n))
            n += 1


def test_sigkill_during_store_never_leaves_a_torn_or_empty_item(url: str) -> None:
    (dom,) = _create(url, 1)
    rng = random.Random(20261125)
    seen = -1
    for _ in range(KILLS):
        writer = fork.Process(target=_writer, args=(url, dom.domid, seen + 1))
        writer.start()
        writer.join(timeout=rng.uniform(0.005, 0.06))
        assert writer.pid is not None
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        assert writer.exitcode == -signal.SIGKILL
        with domdata.open(url) as ctx:
            data = ctx.retrieve(dom.domid, "versions")
        if not data:
            assert seen == -1, "a stored item disappeared"
            continue
        number = _check(data)
        assert number >= seen, "an older version came back"
        seen = number
    assert seen > 0, "the writer never managed to store anything"
