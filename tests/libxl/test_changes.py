"""The change feed of the libxl store: the directory watched, whoever writes it.

libxl's own writes are made here as libxl makes them (lock file, temp file,
rename over the item, unlink the lock), from another process.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import domdata
from domdata import ChangesLost, Domain, Retention
from tests.libxl.test_files import libxl_destroyall
from tests.libxl.test_lock import libxl_lock, libxl_unlock
from tests.test_changes import PATIENCE, _listed, _received

fork = multiprocessing.get_context("fork")


def libxl_store(xen: Path, dom: Domain, userid: str, data: bytes) -> None:
    """libxl_userdata_store: under the lock, write the temp file, rename it over the item."""
    lock = str(xen / f"userdata-l.{dom.domid}.{dom.uuid}.domain-userdata-lock")
    fd = libxl_lock(lock)
    temp = xen / f"userdata-n.{dom.domid}.{dom.uuid}.{userid}"
    temp.write_bytes(data)
    os.rename(temp, xen / f"userdata-d.{dom.domid}.{dom.uuid}.{userid}")
    libxl_unlock(lock, fd)


def _in_another_process(step: Any, *args: Any) -> None:
    process = fork.Process(target=step, args=args)
    process.start()
    process.join(PATIENCE)
    assert process.exitcode == 0


def _follow(url: str, count: int, ready: Any, out: Any) -> None:
    with domdata.open(url) as ctx:
        changes = ctx.changes(since=_listed(ctx.list()).rev, follow=True)
        ready.set()
        for n, change in enumerate(changes, 1):
            out.send((change.op, change.domid, change.userid, change.size))
            if n == count:
                break
    out.close()


def test_a_follower_sees_what_libxl_and_domdata_do_in_other_processes(
    xen: Path, ctx: domdata.Context
) -> None:
    dom = ctx.managed.create("web1")
    ready = fork.Event()
    receive, send = fork.Pipe(duplex=False)
    follower = fork.Process(target=_follow, args=(f"libxl://{xen}", 6, ready, send))
    follower.start()
    assert ready.wait(PATIENCE)
    # Each change is awaited before the next: a store whose file is gone again
    # when the follower reads its event is seen only as its removal.
    ctx.store(dom.domid, "org.example.backup", b"last=today")
    assert _received(receive, 1) == [("store", dom.domid, "org.example.backup", 10)]
    ctx.unlink(dom.domid, "org.example.backup")
    assert _received(receive, 1) == [("delete", dom.domid, "org.example.backup", None)]
    _in_another_process(libxl_store, xen, dom, "libxl-json", b'{"c_info": {}}\0')
    assert _received(receive, 1) == [("store", dom.domid, "libxl-json", 15)]
    _in_another_process(libxl_store, xen, dom, "xl", b"name = 'web1'\n")
    assert _received(receive, 1) == [("store", dom.domid, "xl", 14)]
    _in_another_process(libxl_destroyall, xen, dom)
    removed = _received(receive, 2)
    assert sorted(removed) == [("delete", dom.domid, "libxl-json", None), ("delete", dom.domid, "xl", None)]
    follower.join(PATIENCE)
    assert follower.exitcode == 0


def test_list_then_follow_in_one_context(ctx: domdata.Context) -> None:
    dom = ctx.managed.create()
    ctx.store(dom.domid, "before", b"1")
    listing = _listed(ctx.list(dom.domid))
    assert [item.userid for item in listing] == ["before"]
    ctx.store(dom.domid, "after", b"22")
    ctx.store(dom.domid, "after", b"333")
    changes = list(ctx.changes(dom.domid, since=listing.rev))
    # A size is the file's when the event is read: here, after both stores.
    assert [(c.op, c.userid, c.size) for c in changes] == [("store", "after", 3), ("store", "after", 3)]
    assert [c.rev for c in changes] == [listing.rev + 1, listing.rev + 2]


def test_a_waiting_follower_holds_up_no_other_call_of_its_store(ctx: domdata.Context) -> None:
    """A follower waits for the directory's events without the lock that turns
    them into changes: a listing or another feed of the store, in another
    thread, goes on at once (it once waited for the follower's next wake-up)."""
    dom = ctx.managed.create()
    feed = ctx.changes(follow=True)
    follower = threading.Thread(target=lambda: next(feed), daemon=True)
    follower.start()
    time.sleep(0.2)
    started = time.monotonic()
    ctx.list()
    list(ctx.changes())
    assert time.monotonic() - started < 2.0
    ctx.store(dom.domid, "xl", b"x")
    follower.join(PATIENCE)
    assert not follower.is_alive()


def test_temp_lock_and_record_files_are_not_changes(xen: Path, ctx: domdata.Context) -> None:
    since = _listed(ctx.list()).rev
    dom = ctx.managed.create()  # writes the managed record
    with ctx.lock(dom.domid):  # the lock file
        (xen / f"userdata-n.{dom.domid}.{dom.uuid}.xl").write_bytes(b"half")
    (xen / "unrelated").write_bytes(b"x")
    assert list(ctx.changes(since=since)) == []


def test_a_revision_from_another_process_is_lost(xen: Path, ctx: domdata.Context) -> None:
    dom = ctx.managed.create()
    ctx.store(dom.domid, "xl", b"abc")
    with domdata.open(f"libxl://{xen}") as other:
        elsewhere = _listed(other.list()).rev
    with pytest.raises(ChangesLost, match="not from this process's watch") as caught:
        ctx.changes(since=elsewhere)
    here = _listed(ctx.list()).rev
    assert caught.value.oldest == here + 1
    assert list(ctx.changes(since=here)) == []
    with pytest.raises(ChangesLost):
        ctx.changes(since=0)


def test_a_reader_behind_what_is_kept_gets_changes_lost(xen: Path) -> None:
    with domdata.open(f"libxl://{xen}", changes_retention=Retention(changes=5, seconds=0)) as ctx:
        dom = ctx.managed.create()
        since = _listed(ctx.list()).rev
        for n in range(20):
            ctx.store(dom.domid, "xl", str(n).encode())
        with pytest.raises(ChangesLost, match="no longer kept"):
            ctx.changes(since=since)
        assert len(list(ctx.changes())) == 5
