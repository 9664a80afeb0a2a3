"""The change feed across the hosts of one PostgreSQL store, and across a server restart."""

from __future__ import annotations

import itertools
import multiprocessing
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

import domdata
from tests.kits.store_postgresql import KIT, Server
from tests.test_changes import PATIENCE, _listed, _received

fork = multiprocessing.get_context("fork")


@pytest.fixture
def url(tmp_path: Path, kits: None) -> str:
    return KIT.url(tmp_path)


def _follow(url: str, host: str, since: int, count: int, out: Any, domid: int | None = None) -> None:
    with domdata.open(url, host=host) as ctx:
        for n, change in enumerate(ctx.changes(domid, since=since, follow=True), 1):
            out.send((change.rev, change.op, change.host, change.domid, change.userid))
            if n == count:
                break
    out.close()


def test_a_follower_on_one_host_sees_the_writes_of_another(url: str) -> None:
    with domdata.open(url, host="host-a") as a, domdata.open(url, host="host-b") as b:
        on_a, on_b = a.managed.create(domid=5), b.managed.create(domid=5)
        since = _listed(a.list(all_hosts=True)).rev
        everything, send_all = fork.Pipe(duplex=False)
        mine, send_mine = fork.Pipe(duplex=False)
        followers = [
            fork.Process(target=_follow, args=(url, "host-a", since, 2, send_all)),
            fork.Process(target=_follow, args=(url, "host-a", since, 1, send_mine, 5)),
        ]
        for follower in followers:
            follower.start()
        b.store(on_b.domid, "xl", b"on b")
        a.store(on_a.domid, "xl", b"on a!")
        seen = _received(everything, 2)
        assert seen == [(since + 1, "store", "host-b", 5, "xl"), (since + 2, "store", "host-a", 5, "xl")]
        # A domid names this host's domain only.
        assert _received(mine, 1) == [(since + 2, "store", "host-a", 5, "xl")]
        for follower in followers:
            follower.join(PATIENCE)
            assert follower.exitcode == 0


def test_migrate_is_a_move_in_the_feed(url: str) -> None:
    with domdata.open(url, host="host-a") as a:
        dom = a.managed.create()
        a.store(dom.domid, "xl", b"config")
        since = _listed(a.list()).rev
        assert a.migrate(dom.domid, to_domid=9, to_host="host-b") == 1
        changes = [(c.op, c.host, c.domid, c.userid, c.size) for c in a.changes(since=since)]
    assert changes == [("migrate", "host-a", dom.domid, "xl", None), ("store", "host-b", 9, "xl", 6)]


def _write(url: str, domid: int, first: int, count: int) -> None:
    with domdata.open(url, host="h") as ctx:
        for n in range(first, first + count):
            ctx.store(domid, f"item{n}", b"x")


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_follower_survives_a_server_restart(server: Server, mode: str) -> None:
    url = server.create_database("feed") + "&connect_timeout=2"
    with domdata.open(url, host="h") as ctx:
        dom = ctx.managed.create()
        since = _listed(ctx.list()).rev
    receive, send = fork.Pipe(duplex=False)
    follower = fork.Process(target=_follow, args=(url, "h", since, 200, send))
    follower.start()
    _write(url, dom.domid, 0, 100)
    got = _received(receive, 50)
    server.stop(mode)
    server.start()
    _write(url, dom.domid, 100, 100)
    got += _received(receive, 150)
    follower.join(PATIENCE)
    assert follower.exitcode == 0
    # Exactly once, in order. (After a crash the sequence may skip revisions.)
    assert [userid for *_, userid in got] == [f"item{n}" for n in range(200)]
    revs = [rev for rev, *_ in got]
    assert revs == sorted(set(revs))
    assert revs[:100] == list(range(since + 1, since + 101))


def test_writes_leave_trimming_to_the_readers(url: str) -> None:
    """A write pays nothing for retention: 600 stores keep all 600 changes
    until a reader comes, which trims what retention lets go."""
    import psycopg

    with domdata.open(url, changes_retention=domdata.Retention(changes=10, seconds=0)) as ctx:
        dom = ctx.managed.create()
        for n in range(600):
            ctx.store(dom.domid, "xl", b"%d" % n)
        with psycopg.connect(url, autocommit=True) as raw:
            assert raw.execute("SELECT count(*) FROM changes").fetchall() == [(600,)]
            retained = [change.rev for change in ctx.changes()]
            assert raw.execute("SELECT count(*) FROM changes").fetchall() == [(len(retained),)]
        assert 10 <= len(retained) < 600
        assert retained == list(range(retained[0], 601))


def test_a_store_nobody_reads_is_trimmed_by_its_writers(url: str) -> None:
    """The backstop: once more than 65,536 changes beyond retention are kept,
    a writer trims 256 at every 256th revision; a reader trims the rest and
    sees ChangesLost for what went, never a gap."""
    import psycopg

    with domdata.open(url, changes_retention=domdata.Retention(changes=10, seconds=0)) as ctx:
        dom = ctx.managed.create()
        with psycopg.connect(url, autocommit=True) as raw:
            # 70,000 old changes, as a store nobody read would have kept them.
            raw.execute(
                "INSERT INTO changes (rev, op, host, domid, uuid, userid, size)"
                " SELECT n, 'store', 'elsewhere', 1, gen_random_uuid(), 'xl', 1"
                " FROM generate_series(1, 70000) n"
            )
            raw.execute("SELECT setval('changes_rev', 70000)")
            for n in range(512):
                ctx.store(dom.domid, "xl", b"%d" % n)
            kept = raw.execute("SELECT count(*), min(rev) FROM changes").fetchall()
        assert kept == [(70_512 - 512, 513)]
        # A reader trims the rest that retention lets go before it reads.
        with pytest.raises(domdata.ChangesLost) as caught:
            ctx.changes(since=0)
        assert caught.value.oldest == 70_512 - 10 + 1
        assert [change.rev for change in ctx.changes()] == list(range(70_503, 70_513))


def _notified(listener: Any, seconds: float) -> bool:
    return bool(list(listener.notifies(timeout=seconds, stop_after=1)))


def test_a_write_nobody_follows_wakes_nobody(url: str) -> None:
    """NOTIFY is what a follower waits for; with no follower a write skips it
    (DESIGN section 7: a program that never reads pays only the record)."""
    import psycopg

    with (
        domdata.open(url) as ctx,
        psycopg.connect(url, autocommit=True) as listener,
    ):
        dom = ctx.managed.create()
        listener.execute("LISTEN domdata_changes")
        ctx.store(dom.domid, "xl", b"unread")
        assert not _notified(listener, 0.5)
        following = ctx.changes(since=_listed(ctx.list()).rev, follow=True)
        ctx.store(dom.domid, "xl", b"read")
        assert _notified(listener, PATIENCE)
        assert next(following).size == len(b"read")
        following.close()  # type: ignore[attr-defined]
        ctx.store(dom.domid, "xl", b"unread again")
        assert not _notified(listener, 0.5)


def test_a_follower_starting_while_a_silent_write_commits_sees_it(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that found no follower does not notify: a follower that starts
    before it commits waits for the commit, then reads it. (The safety re-read
    is pushed past the test's patience: only the wake-up can deliver.)"""
    import threading

    import psycopg

    from domdata.stores.postgresql import _changes

    monkeypatch.setattr(_changes, "_SAFETY", 10 * PATIENCE)
    with domdata.open(url, host="h") as ctx, psycopg.connect(url, autocommit=True) as raw:
        dom = ctx.managed.create()
        since = _listed(ctx.list()).rev
        seen: list[domdata.Change] = []
        with raw.transaction():
            # What ctx.store does, in a transaction that stays open.
            raw.execute("SELECT domdata_put('h', %s, 'xl', 'x', 1000)", (dom.domid,))

            def follow() -> None:
                seen.extend(itertools.islice(ctx.changes(since=since, follow=True), 1))

            follower = threading.Thread(target=follow, daemon=True)
            follower.start()
            with psycopg.connect(url, autocommit=True) as watcher:
                waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                deadline = time.monotonic() + PATIENCE
                while watcher.execute(waiting).fetchone() != (1,):
                    assert time.monotonic() < deadline, "the follower did not wait for the commit"
                    time.sleep(0.01)
            assert not seen
        follower.join(PATIENCE)
        assert [(c.rev, c.op, c.userid) for c in seen] == [(since + 1, "store", "xl")]


_CHILD = """
import sys, domdata
with domdata.open(sys.argv[1], host="h") as ctx:
    domid = int(sys.argv[2])
    ctx.store(domid, "child", b"123")
    assert ctx.unlink(domid, "child")
    assert not ctx.unlink(domid, "child")
"""


def test_writes_in_a_lock_and_in_a_hand_off_record_their_changes(url: str) -> None:
    """The statements that write under a held lock, and a child's under a
    handed-on one, record their changes as the one-step calls do."""
    import subprocess
    import sys

    with domdata.open(url, host="h") as ctx:
        dom = ctx.managed.create()
        since = _listed(ctx.list()).rev
        with ctx.lock(dom.domid):
            ctx.store(dom.domid, "held", b"1")
            assert ctx.unlink(dom.domid, "held")
            assert not ctx.unlink(dom.domid, "held")
            ctx.store(dom.domid, "kept", b"12")
        with ctx.handoff(dom.domid) as held:
            child = subprocess.run(
                [sys.executable, "-c", _CHILD, url, str(dom.domid)], **held.popen_kwargs(), timeout=120
            )
            assert child.returncode == 0
        assert ctx.migrate(dom.domid, to_domid=7) == 1
        changes = [(c.rev, c.op, c.domid, c.userid, c.size) for c in ctx.changes(since=since)]
    assert changes == [
        (since + 1, "store", dom.domid, "held", 1),
        (since + 2, "delete", dom.domid, "held", None),
        (since + 3, "store", dom.domid, "kept", 2),
        (since + 4, "store", dom.domid, "child", 3),
        (since + 5, "delete", dom.domid, "child", None),
        (since + 6, "migrate", dom.domid, "kept", None),
        (since + 7, "store", 7, "kept", 2),
    ]


def test_a_migration_records_each_item_gone_then_stored(url: str) -> None:
    with domdata.open(url, host="h") as ctx:
        dom = ctx.managed.create()
        for userid in ("a", "b", "c"):
            ctx.store(dom.domid, userid, userid.encode() * 2)
        since = _listed(ctx.list()).rev
        assert ctx.migrate(dom.domid, to_domid=9, to_host="elsewhere") == 3
        changes = [(c.op, c.host, c.domid, c.userid, c.size) for c in ctx.changes(since=since)]
    moves = [changes[n : n + 2] for n in range(0, len(changes), 2)]
    assert len(changes) == 6
    for gone, stored in moves:
        assert gone == ("migrate", "h", dom.domid, stored[3], None)
        assert stored[:3] == ("store", "elsewhere", 9)
        assert stored[4] == 2
    assert sorted(gone[3] for gone, _ in moves) == ["a", "b", "c"]


def _waiters(watcher: Any, count: int) -> None:
    """Return once *count* sessions wait for a lock."""
    waiting = "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted"
    deadline = time.monotonic() + PATIENCE
    while watcher.execute(waiting).fetchone() != (count,):
        assert time.monotonic() < deadline, f"never {count} sessions waiting"
        time.sleep(0.01)


def test_a_removal_of_many_items_and_a_store_of_one_of_them_do_not_deadlock(url: str) -> None:
    """A statement that removes several items takes their rows before it
    records any change: recording one (the feed's lock) while the next row is
    still to take would wait, holding the feed's lock, for a writer of that
    row who waits for the feed's lock (PostgreSQL breaks the cycle by failing
    one of them). Here a reap of items a and b meets a store of b, both queued
    behind a third writer's open transaction (item c, which the reap does not
    see)."""
    import threading

    import psycopg

    from domdata.stores.postgresql import _DROP, _UPSERT
    from domdata.stores.postgresql._changes import logged

    uuid = "6f1b2a9e-0a7c-4d5e-9b3f-1c2d3e4f5a6b"
    with domdata.open(url, host="h") as ctx:
        since = _listed(ctx.list()).rev
    outcomes: dict[str, object] = {}

    def run(name: str, sql: Any, params: tuple[object, ...]) -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                outcomes[name] = conn.execute(sql, params).fetchone()
        except psycopg.Error as exc:
            outcomes[name] = exc

    with psycopg.connect(url, autocommit=True) as raw, psycopg.connect(url, autocommit=True) as watcher:
        for userid in ("a", "b"):
            raw.execute(_UPSERT, ("h", 4, uuid, userid, b"old", None))
        with raw.transaction():
            raw.execute(_UPSERT, ("h", 4, uuid, "c", b"first", None))
            reap = threading.Thread(target=run, args=("reap", logged(_DROP), ("h", [4], [uuid], "reap")))
            reap.start()
            _waiters(watcher, 1)
            store = threading.Thread(target=run, args=("store", _UPSERT, ("h", 4, uuid, "b", b"new", None)))
            store.start()
            _waiters(watcher, 2)
        reap.join(PATIENCE)
        store.join(PATIENCE)
    assert not reap.is_alive()
    assert not store.is_alive()
    assert not any(isinstance(outcome, Exception) for outcome in outcomes.values()), outcomes
    with domdata.open(url, host="h") as ctx:
        changes = [(c.op, c.userid) for c in ctx.changes(since=since)]
    assert changes == [
        ("store", "a"),
        ("store", "b"),
        ("store", "c"),
        ("reap", "a"),
        ("reap", "b"),
        ("store", "b"),
    ]


def _listening(url: str) -> None:
    """Return once a follower holds the listeners' lock ("chng", 2)."""
    import psycopg

    held = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid = 1667788391 AND objid = 2 AND objsubid = 2 AND mode = 'ShareLock'"
    )
    deadline = time.monotonic() + PATIENCE
    while True:
        with suppress(psycopg.OperationalError), psycopg.connect(url, autocommit=True) as watcher:
            if watcher.execute(held).fetchone() == (1,):
                return
        assert time.monotonic() < deadline, "no follower holds the listeners' lock"
        time.sleep(0.05)


def test_a_follower_back_after_a_server_restart_is_woken_by_the_next_write(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reconnected, a follower holds the listeners' lock again, so a write
    notifies it (the safety re-read is pushed past the test's patience)."""
    import queue
    import threading

    from domdata.stores.postgresql import _changes

    monkeypatch.setattr(_changes, "_SAFETY", 10 * PATIENCE)
    url = server.create_database("feed") + "&connect_timeout=2"
    with domdata.open(url, host="h") as ctx:
        dom = ctx.managed.create()
        since = _listed(ctx.list()).rev
        seen: queue.Queue[domdata.Change] = queue.Queue()

        def follow() -> None:
            for change in itertools.islice(ctx.changes(since=since, follow=True), 2):
                seen.put(change)

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        _listening(url)
        ctx.store(dom.domid, "before", b"1")
        assert seen.get(timeout=PATIENCE).userid == "before"
        server.stop("fast")
        server.start()
        _listening(url)
        ctx.store(dom.domid, "after", b"2")
        assert seen.get(timeout=PATIENCE).userid == "after"
        follower.join(PATIENCE)
        assert not follower.is_alive()


@pytest.mark.parametrize("version", [3, 4, 5, 6])
def test_an_upgrade_to_statement_recorded_changes_keeps_the_feed(url: str, version: int) -> None:
    """A store whose writes a trigger recorded (or none, before 4), upgraded:
    its items stay, its revisions go on where they were, a since that was
    valid stays valid, and every kind of write is recorded once."""
    import psycopg

    from domdata.stores.postgresql._schema import ensure_schema

    uuid = "6f1b2a9e-0a7c-4d5e-9b3f-1c2d3e4f5a6b"
    with psycopg.connect(url, autocommit=True) as raw:
        ensure_schema(raw, url, upto=version)
        raw.execute("INSERT INTO domains (host, domid, uuid) VALUES ('h', 3, %s)", (uuid,))
        for userid in ("a", "b", "c"):
            raw.execute("SELECT domdata_put('h', 3, %s, 'old', 1000)", (userid,))
        raw.execute("SELECT domdata_delete('h', 3, 'c', 1000)")
        recorded = 4 if version >= 4 else 0
        if recorded:
            assert raw.execute("SELECT max(rev) FROM changes").fetchone() == (recorded,)
    with domdata.open(url, host="h") as ctx:
        assert [(i.userid, i.size) for i in ctx.list(3)] == [("a", 3), ("b", 3)]
        assert _listed(ctx.list()).rev == recorded
        assert [c.rev for c in ctx.changes(since=0)] == list(range(1, recorded + 1))
        ctx.store(3, "a", b"new")
        assert ctx.unlink(3, "b")
        assert not ctx.unlink(3, "b")
        assert ctx.migrate(3, to_domid=4) == 1
        ctx.destroy(4)
        changes = [(c.rev, c.op, c.domid, c.userid) for c in ctx.changes(since=recorded)]
    first = recorded + 1
    assert changes == [
        (first, "store", 3, "a"),
        (first + 1, "delete", 3, "b"),
        (first + 2, "migrate", 3, "a"),
        (first + 3, "store", 4, "a"),
        (first + 4, "destroy", 4, "a"),
    ]


def test_a_killed_followers_lock_goes_with_its_session(url: str) -> None:
    """A follower killed leaves no listeners' lock behind: writes stop notifying."""
    import os
    import signal

    import psycopg

    with domdata.open(url, host="h") as ctx, psycopg.connect(url, autocommit=True) as listener:
        dom = ctx.managed.create()
        receive, send = fork.Pipe(duplex=False)
        follower = fork.Process(target=_follow, args=(url, "h", _listed(ctx.list()).rev, 2, send))
        follower.start()
        _listening(url)
        listener.execute("LISTEN domdata_changes")
        ctx.store(dom.domid, "xl", b"1")
        assert _received(receive, 1)[0][-1] == "xl"
        assert _notified(listener, PATIENCE)
        assert follower.pid is not None
        os.kill(follower.pid, signal.SIGKILL)
        follower.join(PATIENCE)
        held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 2 AND objsubid = 2"
        deadline = time.monotonic() + PATIENCE
        while listener.execute(held).fetchone() != (0,):
            assert time.monotonic() < deadline, "the killed follower's lock stayed"
            time.sleep(0.05)
        list(listener.notifies(timeout=0))
        ctx.store(dom.domid, "xl", b"2")
        assert not _notified(listener, 0.5)
