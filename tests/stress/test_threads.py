"""Threads in one process: a shared context serialises its calls, and separate
contexts exclude each other through the store's lock, on every store."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import domdata
from tests.kits import STORE_KITS

THREADS = 4
INCREMENTS = 100

pytestmark = pytest.mark.slow


@pytest.fixture(params=sorted(STORE_KITS))
def url(request: pytest.FixtureRequest, tmp_path: Path, kits: None) -> str:
    return STORE_KITS[request.param].url(tmp_path)


def _increments(ctx: domdata.Context, domid: int) -> None:
    for _ in range(INCREMENTS):
        with ctx.lock(domid):
            value = int(ctx.retrieve(domid, "counter") or b"0")
            ctx.store(domid, "counter", str(value + 1).encode())


def _run(workers: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []

    def guarded(work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(work,)) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_threads_sharing_one_context_lose_no_update(url: str) -> None:
    with domdata.open(url) as ctx:
        dom = ctx.managed.create()
        _run([lambda: _increments(ctx, dom.domid)] * THREADS)
        assert ctx.retrieve(dom.domid, "counter") == str(THREADS * INCREMENTS).encode()


def test_threads_with_their_own_contexts_lose_no_update(url: str) -> None:
    with domdata.open(url) as ctx:
        dom = ctx.managed.create()
    contexts = [domdata.open(url) for _ in range(THREADS)]
    try:
        _run([lambda c=c: _increments(c, dom.domid) for c in contexts])  # type: ignore[misc]
    finally:
        for c in contexts:
            c.close()
    with domdata.open(url) as ctx:
        assert ctx.retrieve(dom.domid, "counter") == str(THREADS * INCREMENTS).encode()
