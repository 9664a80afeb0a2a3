"""Two hosts' contexts at once from separate processes, on one PostgreSQL database."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

import domdata
from tests.kits.store_postgresql import KIT

WORKERS = 8
INCREMENTS = 200
HOSTS = ("host-a", "host-b")
DOMID = 1

# Forked children open their own context; the parent holds none across a fork.
fork = multiprocessing.get_context("fork")


@pytest.fixture
def url(tmp_path: Path, kits: None) -> str:
    return KIT.url(tmp_path)


def _increment(url: str, host: str, start: Any) -> None:
    start.wait()
    with domdata.open(url, host=host) as ctx:
        for _ in range(INCREMENTS):
            with ctx.lock(DOMID):
                value = int(ctx.retrieve(DOMID, "counter") or b"0")
                ctx.store(DOMID, "counter", str(value + 1).encode())


@pytest.mark.slow
def test_locked_increments_on_two_hosts_lose_no_update(url: str) -> None:
    # The same domid on both hosts: two domains, two locks, two counters.
    for host in HOSTS:
        with domdata.open(url, host=host) as ctx:
            ctx.managed.create(domid=DOMID)
    start = fork.Event()
    workers = [fork.Process(target=_increment, args=(url, HOSTS[n % 2], start)) for n in range(WORKERS)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(600)
    assert [worker.exitcode for worker in workers] == [0] * WORKERS
    for host in HOSTS:
        with domdata.open(url, host=host) as ctx:
            assert ctx.retrieve(DOMID, "counter") == str(WORKERS // 2 * INCREMENTS).encode()
    with domdata.open(url, host=HOSTS[0]) as ctx:
        assert sorted(item.host or "" for item in ctx.list(all_hosts=True)) == sorted(HOSTS)
