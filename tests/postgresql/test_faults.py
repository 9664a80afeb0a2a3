"""The PostgreSQL server stops and comes back: clear errors, no hang, nothing acknowledged lost.

These tests stop their own server, never the session's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

import domdata
from domdata import StoreUnavailable
from tests.kits.store_postgresql import Server

#: Seconds a call may take against a stopped server before it counts as a hang
#: (the URL's connect_timeout is 2 s; pool wait, then one diagnostic connect).
HANG = 30.0


def _bounded(call: Callable[[], object]) -> BaseException | None:
    """Run *call* in a thread; fail the test if it has not returned after HANG s."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG)
    assert outcome, f"the call still hangs after {HANG} s"
    return outcome[0]


def _until_it_works(call: Callable[[], object]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            call()
            return
        except StoreUnavailable:
            assert time.monotonic() < deadline, "the store never came back"
            time.sleep(0.2)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_server_stopped_then_back(server: Server, mode: str) -> None:
    url = server.create_database("faults") + "&connect_timeout=2"
    with domdata.open(url, host="h") as ctx:
        dom = ctx.managed.create()
        for n in range(20):
            ctx.store(dom.domid, f"item{n}", b"acknowledged %d" % n)
        server.stop(mode)

        for call in (
            lambda: ctx.retrieve(dom.domid, "item0"),
            lambda: ctx.store(dom.domid, "item0", b"while down"),
            lambda: ctx.list(dom.domid),
            lambda: domdata.open(url, host="h"),
        ):
            error = _bounded(call)
            assert isinstance(error, StoreUnavailable), repr(error)
            assert f"port {server.port}" in str(error) or f":{server.port}" in str(error)
            assert str(server.dir) in str(error)

        server.start()
        _until_it_works(lambda: ctx.retrieve(dom.domid, "item0"))
        for n in range(20):
            assert ctx.retrieve(dom.domid, f"item{n}") == b"acknowledged %d" % n
        ctx.store(dom.domid, "after", b"back")
        with ctx.lock(dom.domid):
            ctx.store(dom.domid, "after", ctx.retrieve(dom.domid, "after") + b" again")
    with domdata.open(url, host="h") as again:
        assert again.retrieve(dom.domid, "after") == b"back again"


def test_server_restarted_under_a_held_lock(server: Server) -> None:
    url = server.create_database("faults") + "&connect_timeout=2"
    with domdata.open(url, host="h") as ctx:
        dom = ctx.managed.create()
        with ctx.lock(dom.domid):
            ctx.store(dom.domid, "n", b"1")
            server.stop("fast")
            server.start()
            # The lock died with its session: calls it guarded must not run
            # unguarded. (The context's mutex is held here: no other thread.)
            with pytest.raises(StoreUnavailable):
                ctx.store(dom.domid, "n", b"unguarded")
        _until_it_works(lambda: ctx.store(dom.domid, "n", b"2"))
        assert ctx.retrieve(dom.domid, "n") == b"2"
