"""The change feed (DESIGN section 7) on every store that keeps one, with real processes.

- every write path records one change per item, with its op, in revision order;
- list, then follow from the list's revision: no gap, no double;
- a follower killed and restarted from its last revision sees each change once;
- a follower behind the retention window gets ChangesLost, never a silent gap;
- 8 writers x 200 changes, seen by 2 followers: all 1,600, in revision order.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import domdata
from domdata import Change, ChangesLost, Incarnation, Item, Listing, Retention
from tests.kits import STORE_KITS, StoreKit

#: The stores with a change feed.
FEED_STORES = ["postgresql", "sqlite"]
WRITERS = 8
CHANGES = 200
FOLLOWERS = 2
#: A guard against a hang, never a speed assertion.
PATIENCE = 120

fork = multiprocessing.get_context("fork")


@pytest.fixture(params=FEED_STORES)
def kit(request: pytest.FixtureRequest, kits: None) -> StoreKit:
    return STORE_KITS[request.param]


@pytest.fixture
def url(kit: StoreKit, tmp_path: Path) -> str:
    return kit.url(tmp_path)


@pytest.fixture
def ctx(url: str) -> Iterator[domdata.Context]:
    with domdata.open(url) as opened:
        yield opened


def _listed(listing: Sequence[Item]) -> Listing:
    assert isinstance(listing, Listing)
    return listing


def _summary(changes: Iterator[Change] | list[Change]) -> list[tuple[str, str, int | None]]:
    return [(c.op, c.userid, c.size) for c in changes]


# -- what is recorded ---------------------------------------------------------------


def test_every_write_path_records_its_change(ctx: domdata.Context, kit: StoreKit, url: str) -> None:
    dom = ctx.managed.create("web1")
    start = _listed(ctx.list()).rev
    ctx.store(dom.domid, "xl", b"abc")
    ctx.store(dom.domid, "xl", b"abcd")
    ctx.store(dom.domid, "xl", b"")
    ctx.store(dom.domid, "a", b"1")
    assert ctx.unlink(dom.domid, "a")
    assert not ctx.unlink(dom.domid, "a")
    with ctx.lock(dom.domid):
        ctx.store(dom.domid, "held", b"12345")
    ctx.store(dom.domid, "b", b"12")
    ctx.destroy(dom.domid)
    changes = list(ctx.changes(since=start))
    assert _summary(changes[:7]) == [
        ("store", "xl", 3),
        ("store", "xl", 4),
        ("delete", "xl", None),
        ("store", "a", 1),
        ("delete", "a", None),
        ("store", "held", 5),
        ("store", "b", 2),
    ]
    # One record per item removed, in whatever order the store removed them.
    assert sorted(_summary(changes[7:])) == [("destroy", "b", None), ("destroy", "held", None)]
    assert [c.rev for c in changes] == list(range(start + 1, start + 10))
    assert {(c.domid, c.uuid) for c in changes} == {(dom.domid, dom.uuid)}
    (host,) = {c.host for c in changes}
    assert (host is None) == (kit.name == "sqlite")


def test_reap_and_the_daemons_collection_are_reap_changes(
    ctx: domdata.Context, kit: StoreKit, url: str
) -> None:
    first, second = ctx.managed.create(), ctx.managed.create()
    ctx.store(first.domid, "xl", b"1")
    ctx.store(second.domid, "xl", b"2")
    start = _listed(ctx.list()).rev
    kit.end_managed(url, first.incarnation)
    kit.end_managed(url, second.incarnation)
    assert ctx.destroy(Incarnation(first.domid, first.uuid)) == 1  # what watch does
    assert ctx.reap().items == 1
    changes = list(ctx.changes(since=start))
    assert [(c.op, c.domid, c.size) for c in changes] == [
        ("reap", first.domid, None),
        ("reap", second.domid, None),
    ]


def test_changes_of_one_domain(ctx: domdata.Context) -> None:
    one, two = ctx.managed.create(), ctx.managed.create()
    for n in range(5):
        ctx.store(one.domid, "xl", b"x" * (n + 1))
        ctx.store(two.domid, "xl", b"y")
    assert [c.size for c in ctx.changes(one.domid)] == [1, 2, 3, 4, 5]
    assert {c.domid for c in ctx.changes(two.domid, since=3)} == {two.domid}


def test_list_tells_its_revision(ctx: domdata.Context) -> None:
    dom = ctx.managed.create()
    empty = _listed(ctx.list(dom.domid))
    assert empty == []
    ctx.store(dom.domid, "xl", b"abc")
    listing = _listed(ctx.list(dom.domid))
    assert listing.rev == empty.rev + 1
    assert list(ctx.changes(since=listing.rev)) == []
    assert _listed(ctx.list()).rev == listing.rev


@pytest.mark.parametrize("since", [-1, "3", 1.5, True])
def test_a_bad_since_is_refused(ctx: domdata.Context, since: Any) -> None:
    with pytest.raises(domdata.InvalidData, match="since"):
        ctx.changes(since=since)


def test_a_revision_from_another_store_is_lost(ctx: domdata.Context) -> None:
    dom = ctx.managed.create()
    ctx.store(dom.domid, "xl", b"abc")
    with pytest.raises(ChangesLost, match="newer than this store's newest") as caught:
        ctx.changes(since=_listed(ctx.list()).rev + 1)
    assert caught.value.oldest == 1


# -- retention --------------------------------------------------------------------


def test_a_reader_behind_the_retention_window_gets_changes_lost(url: str) -> None:
    with domdata.open(url, changes_retention=Retention(changes=10, seconds=0)) as ctx:
        dom = ctx.managed.create()
        ctx.store(dom.domid, "xl", b"0")
        behind = ctx.changes(since=0, follow=True)
        assert next(behind).rev == 1
        for n in range(600):
            ctx.store(dom.domid, "xl", str(n).encode())
        retained = list(ctx.changes())
        assert 10 <= len(retained) < 600
        oldest = retained[0].rev
        assert [c.rev for c in retained] == list(range(oldest, 602))
        with pytest.raises(ChangesLost, match=f"oldest available: {oldest}") as caught:
            ctx.changes(since=1)
        assert (caught.value.since, caught.value.oldest) == (1, oldest)
        assert [c.rev for c in ctx.changes(since=oldest - 1)] == [c.rev for c in retained]
        # The follower that was already reading does not skip silently either.
        with pytest.raises(ChangesLost):
            next(behind)


def test_retention_keeps_young_changes(url: str) -> None:
    with domdata.open(url, changes_retention=Retention(changes=10, seconds=3600)) as ctx:
        dom = ctx.managed.create()
        for n in range(600):
            ctx.store(dom.domid, "xl", str(n).encode())
        assert [c.rev for c in ctx.changes()] == list(range(1, 601))


# -- followers in other processes ---------------------------------------------------


def _follow(url: str, since: int, count: int, out: Any, domid: int | None = None) -> None:
    """Follow from *since*; send each revision down *out*; stop after *count*."""
    with domdata.open(url) as ctx:
        for n, change in enumerate(ctx.changes(domid, since=since, follow=True), 1):
            out.send((change.rev, change.op, change.domid, change.userid))
            if n == count:
                break
    out.close()


def _write(url: str, domid: int, count: int, start: Any) -> None:
    with domdata.open(url) as ctx:
        start.wait()
        for n in range(count):
            ctx.store(domid, f"w{os.getpid()}", str(n).encode())


def _received(conn: Any, count: int) -> list[tuple[Any, ...]]:
    got: list[tuple[Any, ...]] = []
    for _ in range(count):
        assert conn.poll(PATIENCE), f"the follower stopped after {len(got)} changes"
        got.append(conn.recv())
    return got


def test_many_writers_two_followers_see_everything_in_order(ctx: domdata.Context, url: str) -> None:
    doms = [ctx.managed.create() for _ in range(WRITERS)]
    since = _listed(ctx.list()).rev
    total = WRITERS * CHANGES
    pipes = [fork.Pipe(duplex=False) for _ in range(FOLLOWERS)]
    followers = [fork.Process(target=_follow, args=(url, since, total, send)) for _, send in pipes]
    for follower in followers:
        follower.start()
    start = fork.Event()
    writers = [fork.Process(target=_write, args=(url, d.domid, CHANGES, start)) for d in doms]
    for writer in writers:
        writer.start()
    start.set()
    seen = [_received(receive, total) for receive, _ in pipes]
    for process in writers + followers:
        process.join(PATIENCE)
        assert process.exitcode == 0
    assert seen[0] == seen[1]
    assert [rev for rev, *_ in seen[0]] == list(range(since + 1, since + total + 1))
    for dom in doms:
        assert sum(1 for _, op, domid, _ in seen[0] if domid == dom.domid and op == "store") == CHANGES
    assert [c.rev for c in ctx.changes(since=since)] == [r for r, *_ in seen[0]]


def test_a_follower_killed_and_restarted_sees_each_change_once(ctx: domdata.Context, url: str) -> None:
    dom = ctx.managed.create()
    since = _listed(ctx.list()).rev
    total = 300
    receive, send = fork.Pipe(duplex=False)
    first = fork.Process(target=_follow, args=(url, since, total, send))
    first.start()
    start = fork.Event()
    writer = fork.Process(target=_write, args=(url, dom.domid, total, start))
    writer.start()
    start.set()
    got = _received(receive, 50)
    assert first.pid is not None
    os.kill(first.pid, signal.SIGKILL)
    first.join(PATIENCE)
    # Whatever it sent before dying is what it saw; it resumes from the last one.
    while receive.poll(0):
        try:
            got.append(receive.recv())
        except EOFError:
            break
    resume = got[-1][0]
    receive, send = fork.Pipe(duplex=False)
    second = fork.Process(target=_follow, args=(url, resume, since + total - resume, send))
    second.start()
    got += _received(receive, since + total - resume)
    for process in (writer, second):
        process.join(PATIENCE)
        assert process.exitcode == 0
    assert [rev for rev, *_ in got] == list(range(since + 1, since + total + 1))


def _write_items(url: str, domid: int, count: int, start: Any) -> None:
    with domdata.open(url) as ctx:
        start.wait()
        for n in range(count):
            ctx.store(domid, f"u{n:03}", b"x")


def test_list_then_follow_has_no_gap_and_no_double(ctx: domdata.Context, url: str) -> None:
    dom = ctx.managed.create()
    start = fork.Event()
    writer = fork.Process(target=_write_items, args=(url, dom.domid, 200, start))
    writer.start()
    start.set()
    # List while the writer runs: the items and the revision are one snapshot.
    while len(listing := _listed(ctx.list(dom.domid))) < 20:
        pass
    writer.join(PATIENCE)
    assert writer.exitcode == 0
    listed = [item.userid for item in listing]
    followed = [change.userid for change in ctx.changes(dom.domid, since=listing.rev)]
    assert listed + followed == [f"u{n:03}" for n in range(200)]


# -- schema -------------------------------------------------------------------------


def test_a_version_1_sqlite_database_is_upgraded_in_place(tmp_path: Path) -> None:
    from domdata.stores.sqlite import MIGRATIONS, SCHEMA_VERSION

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        for statement in MIGRATIONS[0]:
            db.execute(statement)
        db.execute("INSERT INTO domains VALUES (7, '6f1d5bd8-0b6f-4c49-9d32-6d2f6b7b0e5a', 'old')")
        db.execute("INSERT INTO userdata VALUES (7, '6f1d5bd8-0b6f-4c49-9d32-6d2f6b7b0e5a', 'xl', x'6869')")
        db.execute("PRAGMA user_version = 1")
    with domdata.open(f"sqlite://{path}") as ctx:
        assert ctx.retrieve(7, "xl") == b"hi"
        assert _listed(ctx.list()).rev == 0
        ctx.store(7, "xl", b"hello")
        assert _summary(ctx.changes()) == [("store", "xl", 5)]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@pytest.mark.parametrize(("changes", "seconds"), [(0, 60.0), (-5, 60.0), (10, -1.0), (10, float("nan"))])
def test_a_retention_that_would_drop_everything_is_refused(changes: int, seconds: float) -> None:
    with pytest.raises(ValueError, match="Retention"):
        Retention(changes=changes, seconds=seconds)


def test_revisions_are_never_reused_after_trimming(url: str) -> None:
    with domdata.open(url, changes_retention=Retention(changes=1, seconds=0)) as ctx:
        dom = ctx.managed.create()
        for n in range(512):
            ctx.store(dom.domid, "xl", str(n).encode())
        kept = [c.rev for c in ctx.changes()]
        assert kept == list(range(kept[0], 513))
        assert kept[0] > 256
        ctx.store(dom.domid, "xl", b"again")
        assert [c.rev for c in ctx.changes(since=512)] == [513]
