"""The libxl store's one-step calls (``LibxlDomains`` as a ``OneStepTable``),
with real processes, lock files and flock.

A single ``retrieve``, ``store`` or ``unlink`` on a managed domain locks the
incarnation this context last saw under that domid, without looking at the
directory first, then checks that its record still exists. These tests are
about what the guess may get wrong: the incarnation ended or was replaced
between the guess and the lock (by another process, or while the call waited
for the lock), the lock file of an ended incarnation (it must be unlinked while
held, then closed), and libxl holding the lock meanwhile.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import uuid as _uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import domdata
from domdata import Domain, Incarnation
from domdata.stores import OneStepTable, StoreOptions
from domdata.stores.libxl import LibxlStore
from tests.libxl.test_files import libxl_destroyall
from tests.libxl.test_lock import libxl_lock, libxl_unlock

fork = multiprocessing.get_context("fork")

#: The libxl-locker race: calls per domdata process, and the pauses between
#: two locks of a libxl locker and (longer) between two domdata calls, so that
#: libxl's lockers come and go between two calls: the lock file a context
#: kept has most often been unlinked by the time it is used again.
ROUNDS = 100
LIBXL_GAP = 0.002
DOMDATA_GAP = 0.004


@pytest.fixture
def url(xen: Path) -> str:
    return f"libxl://{xen}"


@pytest.fixture
def ctx(url: str) -> Iterator[domdata.Context]:
    with domdata.open(url, lock_timeout=30) as context:
        yield context


@pytest.fixture
def dom(ctx: domdata.Context) -> Domain:
    """A managed domain with an item, which *ctx* has read (its incarnation is cached)."""
    made = ctx.managed.create("old")
    ctx.store(made.domid, "xl", b"old")
    assert ctx.retrieve(made.domid, "xl") == b"old"
    return made


def _lock_file(xen: Path, incarnation: Incarnation) -> Path:
    return xen / f"userdata-l.{incarnation.domid}.{incarnation.uuid}.domain-userdata-lock"


def _item(xen: Path, incarnation: Incarnation, userid: str = "xl") -> Path:
    return xen / f"userdata-d.{incarnation.domid}.{incarnation.uuid}.{userid}"


def _files_of(xen: Path, incarnation: Incarnation) -> list[str]:
    return sorted(n for n in os.listdir(xen) if f".{incarnation.domid}.{incarnation.uuid}." in n)


def _in_child(target: Callable[..., None], *args: Any) -> None:
    """Run *target* in a forked process (it opens its own context) and wait for it."""
    child = fork.Process(target=target, args=args)
    child.start()
    child.join(60)
    assert child.exitcode == 0


def _destroy(url: str, domid: int) -> None:
    with domdata.open(url) as other:
        other.destroy(domid)


def _replace(url: str, domid: int, uuid: str) -> None:
    """Destroy the domain and create another one with the same domid, with an item."""
    with domdata.open(url) as other:
        other.destroy(domid)
        other.managed.create("new", domid=domid, uuid=uuid)
        other.store(domid, "xl", b"new")


def test_the_libxl_domain_table_is_one_step(xen: Path) -> None:
    # Without it, every test below would run the general path.
    store = LibxlStore(f"libxl://{xen}", StoreOptions())
    try:
        assert isinstance(store.domain_table(), OneStepTable)
    finally:
        store.close()


# -- (1) the incarnation changed between the guess and the lock ---------------------------


def test_a_domid_recreated_by_another_process_answers_for_the_new_incarnation(
    xen: Path, url: str, ctx: domdata.Context, dom: Domain
) -> None:
    new = Incarnation(dom.domid, str(_uuid.uuid4()))
    _in_child(_replace, url, dom.domid, new.uuid)
    assert ctx.retrieve(dom.domid, "xl") == b"new"
    # The lock taken on the old incarnation was unlinked while held, then closed.
    assert _files_of(xen, dom.incarnation) == []
    assert _lock_file(xen, new).exists()  # kept while the new one lives
    ctx.store(dom.domid, "xl", b"newer")
    assert _item(xen, new).read_bytes() == b"newer"
    assert ctx.unlink(dom.domid, "xl") is True
    assert not _item(xen, new).exists()
    assert _files_of(xen, dom.incarnation) == []


@pytest.mark.parametrize("call", ["retrieve", "store", "unlink"])
def test_a_domid_destroyed_by_another_process_is_not_found_and_leaves_no_lock_file(
    xen: Path, url: str, ctx: domdata.Context, dom: Domain, call: str
) -> None:
    _in_child(_destroy, url, dom.domid)
    with pytest.raises(domdata.DomainNotFound) as caught:
        _call(ctx, call, dom.domid)
    assert f"domain {dom.domid}" in str(caught.value)
    assert _files_of(xen, dom.incarnation) == []


def _call(ctx: domdata.Context, call: str, domid: int) -> object:
    """One call on the domain's item: what it returns (``store``: None)."""
    if call == "retrieve":
        return ctx.retrieve(domid, "xl")
    if call == "store":
        ctx.store(domid, "xl", b"late")
        return None
    return ctx.unlink(domid, "xl")


# -- the domain ends while the call waits for its lock ----------------------------------


def _destroy_under_lock(url: str, domid: int, new_uuid: str | None, locked: Any, go: Any) -> None:
    """Hold the domain's lock; on *go*, destroy it under that lock (and, with
    *new_uuid*, give its domid to a new incarnation with an item) before letting go."""
    with domdata.open(url) as holder, domdata.open(url) as creator, holder.lock(domid):
        locked.set()
        assert go.wait(30)
        holder.destroy(domid)
        if new_uuid is not None:
            creator.managed.create("new", domid=domid, uuid=new_uuid)
            creator.store(domid, "xl", b"new")


@pytest.mark.parametrize("replaced", [False, True], ids=["destroyed", "replaced"])
@pytest.mark.parametrize("call", ["retrieve", "store", "unlink"])
@pytest.mark.parametrize("path", ["call", "in lock"])
def test_a_domain_that_ends_while_the_call_waits_for_its_lock_is_checked_after_it(
    xen: Path, url: str, ctx: domdata.Context, dom: Domain, call: str, replaced: bool, path: str
) -> None:
    # The call guesses the old incarnation, which exists; another process
    # holds its lock, destroys it and lets go. Only a check made after the
    # lock sees that: the call must act on the new incarnation, or on none.
    new = Incarnation(dom.domid, str(_uuid.uuid4()))
    locked, go = fork.Event(), fork.Event()
    holder = fork.Process(
        target=_destroy_under_lock, args=(url, dom.domid, new.uuid if replaced else None, locked, go)
    )
    holder.start()
    outcome: list[object] = []

    def waiting() -> None:
        try:
            if path == "in lock":
                with ctx.lock(dom.domid):
                    outcome.append(_call(ctx, call, dom.domid))
            else:
                outcome.append(_call(ctx, call, dom.domid))
        except domdata.Error as exc:
            outcome.append(exc)

    caller = threading.Thread(target=waiting)
    try:
        assert locked.wait(30)
        caller.start()
        caller.join(0.3)
        assert caller.is_alive(), "the call did not wait for the lock"
        go.set()
        caller.join(30)
        holder.join(30)
        assert holder.exitcode == 0
    finally:
        go.set()
        holder.join(30)
        if holder.exitcode is None:
            holder.kill()
    (result,) = outcome
    if not replaced:
        assert isinstance(result, domdata.DomainNotFound), result
    elif call == "retrieve":
        assert result == b"new"
    elif call == "store":
        assert result is None
        assert _item(xen, new).read_bytes() == b"late"
    else:
        assert result is True
        assert not _item(xen, new).exists()
    # Nothing was read from or written for the old incarnation, and the lock
    # file the call took for it went before it was closed.
    assert _files_of(xen, dom.incarnation) == []


# -- (4) a dead domain ------------------------------------------------------------------


def test_a_domid_never_created_is_not_found_and_no_lock_file_is_made(xen: Path, ctx: domdata.Context) -> None:
    with pytest.raises(domdata.DomainNotFound):
        ctx.retrieve(42, "xl")
    with pytest.raises(domdata.DomainNotFound):
        ctx.store(42, "xl", b"x")
    with pytest.raises(domdata.DomainNotFound):
        ctx.unlink(42, "xl")
    assert os.listdir(xen) == ["domdata-source"]


def test_a_domain_destroyed_here_is_not_found_and_leaves_no_lock_file(
    xen: Path, ctx: domdata.Context, dom: Domain
) -> None:
    ctx.destroy(dom.domid)
    with pytest.raises(domdata.DomainNotFound):
        ctx.retrieve(dom.domid, "xl")
    assert _files_of(xen, dom.incarnation) == []


def test_a_domain_libxl_destroyed_is_not_found_and_leaves_no_lock_file(
    xen: Path, ctx: domdata.Context, dom: Domain
) -> None:
    # libxl's destroy unlinked the lock file this context kept: locking the
    # guess makes a new one, which must go once the record is found gone.
    libxl_destroyall(xen, dom)
    with pytest.raises(domdata.DomainNotFound):
        ctx.retrieve(dom.domid, "xl")
    with pytest.raises(domdata.DomainNotFound):
        ctx.store(dom.domid, "xl", b"late")
    assert _files_of(xen, dom.incarnation) == []


# -- errors, as the general path reports them --------------------------------------------


def test_a_lock_timeout_says_what_the_general_path_says(xen: Path, url: str, dom: Domain) -> None:
    path = str(_lock_file(xen, dom.incarnation))
    fd = libxl_lock(path)
    try:
        with domdata.open(url, lock_timeout=0.05) as impatient:
            with pytest.raises(domdata.LockTimeout) as one_step:
                impatient.retrieve(dom.domid, "xl")
            with pytest.raises(domdata.LockTimeout) as general:
                impatient.list(dom.domid)
    finally:
        libxl_unlock(path, fd)
    assert str(one_step.value) == str(general.value)


def test_a_symbolic_link_at_the_item_path_is_corrupt_as_on_the_general_path(
    xen: Path, ctx: domdata.Context, dom: Domain
) -> None:
    item = _item(xen, dom.incarnation)
    item.unlink()
    item.symlink_to(xen / "elsewhere")
    with pytest.raises(domdata.CorruptItem) as one_step:
        ctx.retrieve(dom.domid, "xl")
    with ctx.lock(dom.domid), pytest.raises(domdata.CorruptItem) as general:
        ctx.retrieve(dom.domid, "xl")
    assert str(one_step.value) == str(general.value)


# -- (2) libxl's locker racing the one-step calls -------------------------------------------

HELD = b"written by libxl under the lock"


def _libxl_holder(lock: str, item: str, start: Any, stop: Any, cycles: Any, violations: Any) -> None:
    """Until *stop*: lock as libxl does; while holding, put a marker in the
    item and check that nobody replaced it; put the item back; release (unlink, close)."""
    temp = os.path.join(os.path.dirname(item), f"libxl-holder-temp.{os.getpid()}")
    start.wait()
    while not stop.is_set():
        fd = libxl_lock(lock)
        with open(temp, "wb") as f:
            f.write(HELD)
        os.rename(temp, item)
        time.sleep(0.0002)
        with open(item, "rb") as f:
            if f.read() != HELD:
                with violations.get_lock():
                    violations.value += 1
        with open(temp, "wb") as f:
            f.write(b"put back by libxl")
        os.rename(temp, item)
        libxl_unlock(lock, fd)
        with cycles.get_lock():
            cycles.value += 1
        time.sleep(LIBXL_GAP)  # libxl's lockers wait in flock(): they would starve domdata's polling


def _domdata_caller(url: str, domid: int, start: Any, violations: Any) -> None:
    with domdata.open(url, lock_timeout=120) as ctx:
        start.wait()
        for n in range(ROUNDS):
            time.sleep(DOMDATA_GAP)
            if n % 2:
                ctx.store(domid, "xl", b"written by domdata")
            elif ctx.retrieve(domid, "xl") == HELD:
                with violations.get_lock():
                    violations.value += 1


@pytest.mark.slow
def test_no_one_step_call_reads_or_writes_while_libxl_holds_the_lock(
    xen: Path, url: str, dom: Domain
) -> None:
    start, stop = fork.Event(), fork.Event()
    violations, cycles = fork.Value("i", 0), fork.Value("i", 0)
    lock, item = str(_lock_file(xen, dom.incarnation)), str(_item(xen, dom.incarnation))
    holders = [
        fork.Process(target=_libxl_holder, args=(lock, item, start, stop, cycles, violations))
        for _ in range(2)
    ]
    callers = [
        fork.Process(target=_domdata_caller, args=(url, dom.domid, start, violations)) for _ in range(3)
    ]
    for worker in holders + callers:
        worker.start()
    start.set()
    try:
        for caller in callers:
            caller.join(300)
            assert caller.exitcode == 0
    finally:
        stop.set()
        for holder in holders:
            holder.join(60)
    assert [holder.exitcode for holder in holders] == [0, 0]
    assert cycles.value > ROUNDS  # libxl locked all along
    assert violations.value == 0
