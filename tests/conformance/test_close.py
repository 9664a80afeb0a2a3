"""A closed context, on every store: closing again does nothing, and every
call after close raises StoreUnavailable without touching a descriptor (the
numbers the store held may belong to other files of the program by then) --
calls on the context, and on what it handed out before: its domain source
(``ctx.domains``, ``ctx.managed``) and its change feeds, whether one is read
on after close or is waiting for a change, in another thread, as it closes."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

import domdata
from domdata import Domain
from domdata.domains import DomainSource, ManagedDomains
from tests.kits import Setup

Call = Callable[[domdata.Context, int], object]
SourceCall = Callable[[DomainSource, Domain], object]
ManagedCall = Callable[[ManagedDomains, Domain], object]
ENDED_UUID = "00000000-0000-0000-0000-000000000000"
#: How long a follower may take to notice that its context closed (it should be at once).
PATIENCE = 3.0

#: Every public call of a context, each as it would be made on a live domain.
CALLS: dict[str, Call] = {
    "store": lambda ctx, domid: ctx.store(domid, "xl", b"new"),
    "retrieve": lambda ctx, domid: ctx.retrieve(domid, "xl"),
    "unlink": lambda ctx, domid: ctx.unlink(domid, "xl"),
    "list": lambda ctx, domid: ctx.list(domid),
    "list-all": lambda ctx, domid: ctx.list(),
    "lock": lambda ctx, domid: ctx.lock(domid).__enter__(),
    "handoff": lambda ctx, domid: ctx.handoff(domid).__enter__(),
    "destroy": lambda ctx, domid: ctx.destroy(domid),
    "destroy-incarnation": lambda ctx, domid: ctx.destroy(domdata.Incarnation(domid, ENDED_UUID)),
    "migrate": lambda ctx, domid: ctx.migrate(domid, to_domid=domid + 1),
    "reap": lambda ctx, domid: ctx.reap(),
    "reap-dry-run": lambda ctx, domid: ctx.reap(dry_run=True),
    "info": lambda ctx, domid: ctx.info(),
    "find": lambda ctx, domid: ctx.find(str(domid)),
    "bound_source": lambda ctx, domid: ctx.bound_source,
    "domains": lambda ctx, domid: ctx.domains,
    "managed": lambda ctx, domid: ctx.managed,
    "managed.create": lambda ctx, domid: ctx.managed.create("another"),
    "changes": lambda ctx, domid: list(ctx.changes()),
    "changes-of-domain": lambda ctx, domid: list(ctx.changes(domid)),
    "follow": lambda ctx, domid: next(iter(ctx.changes(follow=True))),
}


#: Every call on the domain source a context hands out (``ctx.domains``), kept past close.
SOURCE_CALLS: dict[str, SourceCall] = {
    "domains": lambda source, domain: source.domains(),
    "incarnation": lambda source, domain: source.incarnation(domain.domid),
    "incarnations": lambda source, domain: source.incarnations(),
    "lives": lambda source, domain: source.lives(domain.incarnation),
    "find-domid": lambda source, domain: source.find(str(domain.domid)),
    "find-uuid": lambda source, domain: source.find(domain.uuid),
    "find-name": lambda source, domain: source.find(domain.name or "unnamed"),
    "by_domid": lambda source, domain: source.by_domid(domain.domid),
    "by_uuid": lambda source, domain: source.by_uuid(domain.uuid),
    "by_name": lambda source, domain: source.by_name(domain.name or "unnamed"),
}

#: What only ``ctx.managed`` has, kept past close.
MANAGED_CALLS: dict[str, ManagedCall] = {
    "create": lambda managed, domain: managed.create("another"),
    "create-domid": lambda managed, domain: managed.create(domid=domain.domid + 1),
    "remove": lambda managed, domain: managed.remove(domain.incarnation),
}


@pytest.fixture
def closed(setup: Setup) -> tuple[domdata.Context, int]:
    """A context closed after storing an item of a live domain."""
    ctx = setup.open()
    domain = setup.source.create(ctx)
    ctx.store(domain.domid, "xl", b"old")
    ctx.close()
    return ctx, domain.domid


def _files_on_freed_numbers(tmp_path: Path, stack: ExitStack) -> list[int]:
    """Open files until they take every descriptor number the closed store
    may have held (the lowest free numbers are handed out first)."""
    fds = []
    for n in range(16):
        fd = os.open(tmp_path / f"bystander-{n}", os.O_RDWR | os.O_CREAT, 0o600)
        stack.callback(os.close, fd)
        fds.append(fd)
    return fds


def _still_mine(fds: list[int]) -> None:
    """Each file is still open, writable and free of any lock domdata took."""
    import fcntl

    for fd in fds:
        assert os.write(fd, b"mine") == 4
        # A whole-file write lock from another description would conflict if
        # domdata had taken one through this number.
        other = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)
        try:
            fcntl.fcntl(other, fcntl.F_OFD_SETLK, _whole_file_lock())
        finally:
            os.close(other)


def _whole_file_lock() -> bytes:
    """struct flock (LP64 Linux) for a write lock on the whole file."""
    import fcntl
    import struct

    return struct.pack("hhxxxxqqixxxx", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)


def test_close_twice_closes_nothing_twice(setup: Setup, tmp_path: Path) -> None:
    ctx = setup.open()
    domain = setup.source.create(ctx)
    ctx.store(domain.domid, "xl", b"old")
    ctx.close()
    with ExitStack() as stack:
        fds = _files_on_freed_numbers(tmp_path, stack)
        ctx.close()
        with ctx:
            pass  # __exit__ closes a third time
        _still_mine(fds)
    with setup.context() as again:
        assert again.retrieve(domain.domid, "xl") == b"old"


def test_with_block_closing_inside_is_fine(setup: Setup) -> None:
    with setup.open() as ctx:
        ctx.close()


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_every_call_after_close_is_store_unavailable(
    setup: Setup, closed: tuple[domdata.Context, int], call: Call, tmp_path: Path
) -> None:
    ctx, domid = closed
    with ExitStack() as stack:
        fds = _files_on_freed_numbers(tmp_path, stack)
        with pytest.raises(domdata.StoreUnavailable, match="this context is closed"):
            call(ctx, domid)
        _still_mine(fds)
    with setup.context() as again:
        assert again.retrieve(domid, "xl") == b"old"


@pytest.mark.parametrize("call", SOURCE_CALLS.values(), ids=SOURCE_CALLS.keys())
def test_the_domain_source_kept_past_close_is_store_unavailable(
    setup: Setup, call: SourceCall, tmp_path: Path
) -> None:
    ctx = setup.open()
    domain = setup.source.create(ctx)
    ctx.store(domain.domid, "xl", b"old")
    kept = ctx.domains
    ctx.close()
    with ExitStack() as stack:
        fds = _files_on_freed_numbers(tmp_path, stack)
        with pytest.raises(domdata.StoreUnavailable, match="this context is closed"):
            call(kept, domain)
        _still_mine(fds)
    with setup.context() as again:
        assert again.retrieve(domain.domid, "xl") == b"old"


@pytest.mark.parametrize("call", MANAGED_CALLS.values(), ids=MANAGED_CALLS.keys())
def test_ctx_managed_kept_past_close_is_store_unavailable(
    setup: Setup, call: ManagedCall, tmp_path: Path
) -> None:
    if not setup.source.managed:
        pytest.skip("ctx.managed is NotManaged with another source, open or closed")
    ctx = setup.open()
    domain = setup.source.create(ctx)
    ctx.store(domain.domid, "xl", b"old")
    kept = ctx.managed
    ctx.close()
    with ExitStack() as stack:
        fds = _files_on_freed_numbers(tmp_path, stack)
        with pytest.raises(domdata.StoreUnavailable, match="this context is closed"):
            call(kept, domain)
        _still_mine(fds)
    with setup.context() as again:
        assert [d.incarnation for d in again.managed.domains()] == [domain.incarnation]
        assert again.retrieve(domain.domid, "xl") == b"old"


class _Next(threading.Thread):
    """``next(feed)`` in a thread of its own: what it returned or raised."""

    def __init__(self, feed: Iterator[domdata.Change]) -> None:
        super().__init__(daemon=True)
        self._feed = feed
        self._outcome: object = None
        self.start()

    def run(self) -> None:
        try:
            self._outcome = next(self._feed)
        except BaseException as exc:  # the outcome the test asserts on
            self._outcome = exc

    def outcome(self) -> object:
        self.join(PATIENCE)
        assert not self.is_alive(), f"next() on the feed still runs {PATIENCE} s after its context closed"
        return self._outcome


def _closed_context_error(outcome: object) -> None:
    assert isinstance(outcome, domdata.StoreUnavailable), repr(outcome)
    assert "this context is closed" in str(outcome)


def test_a_follower_waiting_as_its_context_closes_ends_with_store_unavailable(
    setup: Setup, tmp_path: Path
) -> None:
    ctx = setup.open()
    domain = setup.source.create(ctx)
    feed = ctx.changes(since=ctx.list().rev, follow=True)
    ctx.store(domain.domid, "xl", b"old")
    assert next(feed).userid == "xl"
    follower = _Next(feed)  # waits for a change that never comes
    time.sleep(0.2)
    ctx.close()
    with ExitStack() as stack:
        fds = _files_on_freed_numbers(tmp_path, stack)
        _closed_context_error(follower.outcome())
        _still_mine(fds)
    with pytest.raises(StopIteration):
        next(feed)  # and it stays ended
    with setup.context() as again:
        assert again.retrieve(domain.domid, "xl") == b"old"


@pytest.mark.parametrize("follow", [False, True], ids=["read", "follow"])
def test_a_feed_read_on_after_its_context_closed_is_store_unavailable(
    setup: Setup, follow: bool, tmp_path: Path
) -> None:
    ctx = setup.open()
    domain = setup.source.create(ctx)
    rev = ctx.list().rev
    ctx.store(domain.domid, "xl", b"old")
    ctx.store(domain.domid, "other", b"more")
    feed = ctx.changes(since=rev, follow=follow)
    assert next(feed).userid == "xl"
    ctx.close()
    with ExitStack() as stack:
        fds = _files_on_freed_numbers(tmp_path, stack)
        _closed_context_error(_Next(feed).outcome())  # not the change it may have read already
        _still_mine(fds)
    with setup.context() as again:
        assert again.retrieve(domain.domid, "other") == b"more"


@pytest.mark.parametrize("block", ["lock", "handoff"])
def test_closing_inside_a_lock_block_releases_nothing_twice(setup: Setup, tmp_path: Path, block: str) -> None:
    ctx = setup.open()
    domain = setup.source.create(ctx)
    with ExitStack() as stack:
        with getattr(ctx, block)(domain.domid):
            ctx.close()
            fds = _files_on_freed_numbers(tmp_path, stack)
        _still_mine(fds)
    with setup.context(lock_timeout=5) as again:
        again.store(domain.domid, "xl", b"after")  # the lock went with the closed context
        assert again.retrieve(domain.domid, "xl") == b"after"
