"""The PostgreSQL store against a real server: schema, hosts, locks, migration, durability."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import domdata
from domdata import DomainExists, DomainNotFound, Item, LockTimeout, StoreUnavailable
from tests.kits.store_postgresql import KIT

fork = multiprocessing.get_context("fork")


@pytest.fixture
def url(tmp_path: Path, kits: None) -> str:
    return KIT.url(tmp_path)


@pytest.fixture
def raw(url: str) -> Iterator[Any]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        yield conn


def _waiting_for_lock(raw: Any) -> None:
    """Return once some session waits for an advisory lock."""
    deadline = time.monotonic() + 30
    while not raw.execute("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone():
        assert time.monotonic() < deadline, "nobody ever waited for the lock"
        time.sleep(0.01)


def _in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_import_domdata_does_not_import_psycopg() -> None:
    code = "import sys, domdata; sys.exit(any(m.startswith('psycopg') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- schema ---------------------------------------------------------------


def _open_and_close(url: str, start: Any) -> None:
    start.wait()
    domdata.open(url).close()


def test_concurrent_first_use_creates_the_schema_once(url: str, raw: Any) -> None:
    from domdata.stores.postgresql._schema import SCHEMA_VERSION

    start = fork.Event()
    workers = [fork.Process(target=_open_and_close, args=(url, start)) for _ in range(8)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0] * 8
    versions = [row[0] for row in raw.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


@pytest.mark.parametrize("name", ["domdata", "domdata-keeper 4242"])
def test_a_store_older_processes_use_is_not_moved_to_writer_recorded_changes(
    url: str, raw: Any, name: str
) -> None:
    """From schema 7 domdata's statements record their changes, not a trigger:
    a process of an older version still connected would write unrecorded, so
    the upgrade waits until none is; nothing is changed meanwhile."""
    import psycopg

    from domdata.stores.postgresql._schema import SCHEMA_VERSION, ensure_schema

    ensure_schema(raw, url, upto=6)
    with psycopg.connect(url, autocommit=True, application_name=name) as older:
        pid = older.info.backend_pid
        with pytest.raises(domdata.StoreUnavailable) as refused:
            domdata.open(url)
        assert f"server pids {pid}" in str(refused.value)
        assert "older version" in str(refused.value)
        assert raw.execute("SELECT max(version) FROM schema_version").fetchone() == (6,)
    domdata.open(url).close()
    assert raw.execute("SELECT max(version) FROM schema_version").fetchone() == (SCHEMA_VERSION,)


def test_an_old_schema_is_upgraded_keeping_its_data(url: str, raw: Any) -> None:
    from domdata.stores.postgresql._schema import SCHEMA_VERSION, ensure_schema

    ensure_schema(raw, url, upto=1)
    uuid = "6f1b2a9e-0a7c-4d5e-9b3f-1c2d3e4f5a6b"
    raw.execute("INSERT INTO domains (host, domid, uuid) VALUES ('h', 3, %s)", (uuid,))
    raw.execute("INSERT INTO userdata VALUES ('h', 3, %s, 'xl', 'old data')", (uuid,))
    with domdata.open(url, host="h") as ctx:
        assert ctx.retrieve(3, "xl") == b"old data"
        ctx.store(3, "xl", b"new data")
        assert ctx.retrieve(3, "xl") == b"new data"
    assert raw.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION


def test_a_newer_schema_is_refused(url: str, raw: Any) -> None:
    domdata.open(url).close()
    raw.execute("INSERT INTO schema_version (version) VALUES (999)")
    with pytest.raises(StoreUnavailable, match="newer"):
        domdata.open(url)


# -- hosts ----------------------------------------------------------------


def test_hosts_never_see_each_others_domids(url: str) -> None:
    with domdata.open(url, host="a") as a, domdata.open(url, host="b") as b:
        dom_a = a.managed.create("web", domid=5)
        dom_b = b.managed.create("web", domid=5)
        only_b = b.managed.create(domid=6)
        a.store(5, "xl", b"on a")
        b.store(5, "xl", b"on b")
        b.store(6, "xl", b"only on b")
        assert a.retrieve(5, "xl") == b"on a"
        assert b.retrieve(5, "xl") == b"on b"
        with pytest.raises(DomainNotFound):
            a.retrieve(6, "xl")
        assert [d.domid for d in a.domains.domains()] == [5]
        assert a.domains.find("web") == dom_a
        assert a.list() == [Item(5, dom_a.uuid, "xl", 4)]
        everywhere = a.list(all_hosts=True)
        assert {(i.host, i.domid, i.uuid) for i in everywhere} == {
            ("a", 5, dom_a.uuid),
            ("b", 5, dom_b.uuid),
            ("b", 6, only_b.uuid),
        }
        assert a.destroy(5) == 1
        assert a.reap().items == 0
        assert b.retrieve(5, "xl") == b"on b"
        assert b.retrieve(6, "xl") == b"only on b"


def test_a_bad_host_name_is_refused(url: str) -> None:
    with pytest.raises(StoreUnavailable, match="host name"):
        domdata.open(url, host="")


def test_the_password_is_never_printed(url: str) -> None:
    # The kit's server trusts local connections: any password is accepted.
    for secret in (url.replace("postgresql://", "postgresql://postgres:s3cret@"), url + "&password=s3cret"):
        with domdata.open(secret) as ctx:
            assert "s3cret" not in ctx.store_url
            assert "s3cret" not in str(ctx.list())
            assert "postgres" in ctx.store_url


# -- locks ----------------------------------------------------------------


def test_a_store_waiting_for_destroy_leaves_nothing_behind(url: str, raw: Any) -> None:
    """The check after the lock sees the destroy that held it (a fresh snapshot)."""
    with domdata.open(url, host="h") as ctx:
        dom = ctx.managed.create()
        with raw.transaction():
            raw.execute("SELECT pg_advisory_xact_lock(domdata_lock_key('h', %s))", (dom.domid,))
            raw.execute("DELETE FROM domains WHERE host = 'h' AND domid = %s", (dom.domid,))
            thread, outcome = _in_thread(lambda: ctx.store(dom.domid, "xl", b"late"))
            _waiting_for_lock(raw)
        thread.join(30)
        assert isinstance(outcome[0], DomainNotFound)
        assert raw.execute("SELECT count(*) FROM userdata").fetchone()[0] == 0


def test_a_retrieve_waiting_for_a_writer_sees_its_write(url: str, raw: Any) -> None:
    with domdata.open(url, host="h") as ctx:
        dom = ctx.managed.create()
        ctx.store(dom.domid, "xl", b"before")
        with raw.transaction():
            raw.execute("SELECT pg_advisory_xact_lock(domdata_lock_key('h', %s))", (dom.domid,))
            raw.execute("UPDATE userdata SET data = 'after' WHERE host = 'h' AND domid = %s", (dom.domid,))
            thread, outcome = _in_thread(lambda: ctx.retrieve(dom.domid, "xl"))
            _waiting_for_lock(raw)
        thread.join(30)
        assert outcome == [b"after"]


def _hold_the_lock(url: str, domid: int, holding: Any, finish: Any, last: str) -> None:
    """In another process: under the domain's lock, store "half", wait, then end with *last*."""
    with domdata.open(url, host="h") as ctx, ctx.lock(domid):
        ctx.store(domid, "xl", b"half")
        holding.set()
        finish.wait(60)
        if last == "destroy":
            ctx.destroy(domid)
        else:
            ctx.store(domid, "xl", b"full")


@pytest.mark.parametrize("last", ["store", "destroy"])
def test_a_retrieve_waits_for_a_lock_held_by_another_process(url: str, raw: Any, last: str) -> None:
    """What the holder committed inside its lock ("half") is never read: a
    retrieve waits for the lock, then sees how the holder left the domain."""
    with domdata.open(url, host="h") as ctx, domdata.open(url, host="h", lock_timeout=0.3) as impatient:
        dom = ctx.managed.create()
        ctx.store(dom.domid, "xl", b"before")
        holding, finish = fork.Event(), fork.Event()
        holder = fork.Process(target=_hold_the_lock, args=(url, dom.domid, holding, finish, last))
        holder.start()
        try:
            assert holding.wait(60)
            with pytest.raises(LockTimeout):
                impatient.retrieve(dom.domid, "xl")
            thread, outcome = _in_thread(lambda: ctx.retrieve(dom.domid, "xl"))
            _waiting_for_lock(raw)
        finally:
            finish.set()
            holder.join(60)
        thread.join(30)
        assert holder.exitcode == 0
        if last == "destroy":
            assert [type(error) for error in outcome] == [DomainNotFound]
        else:
            assert outcome == [b"full"]


def _reincarnate(url: str, domid: int, rounds: int, created: Any) -> None:
    """Incarnations 1..rounds of *domid*, each storing its number, each ending
    without destroy (the domain row goes; its item stays behind for reap)."""
    import psycopg

    with domdata.open(url, host="h") as ctx, psycopg.connect(url, autocommit=True) as raw:
        for n in range(1, rounds + 1):
            ctx.managed.create(domid=domid)
            created.value = n
            ctx.store(domid, "xl", b"%d" % n)
            raw.execute("DELETE FROM domains WHERE host = 'h' AND domid = %s", (domid,))


def test_a_retrieve_racing_ended_incarnations_sees_only_the_live_one(url: str) -> None:
    created = fork.Value("i", 0)
    with domdata.open(url, host="h") as ctx:
        writer = fork.Process(target=_reincarnate, args=(url, 7, 200, created))
        writer.start()
        while writer.is_alive():
            before = created.value
            try:
                data = ctx.retrieve(7, "xl")
            except DomainNotFound:
                continue
            # Incarnation `before` had started when the call did: an item of an
            # earlier one belongs to an incarnation that had ended by then.
            assert not data or int(data) >= before
        writer.join()
        assert writer.exitcode == 0
        # 200 ended incarnations left an item each: the new one sees none of them.
        ctx.managed.create(domid=7)
        assert ctx.retrieve(7, "xl") == b""


def test_calls_in_an_adopted_hand_off_use_the_keepers_lock(url: str) -> None:
    """A context that adopted a hand-off acts at once on that domain (its
    single calls too, in one statement each), re-checking the domain each
    time; an outsider still waits."""
    from domdata._handoff import ENV

    with (
        domdata.open(url, host="h") as ctx,
        domdata.open(url, host="h", lock_timeout=0.3) as outsider,
    ):
        dom = ctx.managed.create()
        with ctx.handoff(dom.domid) as handoff:
            os.environ[ENV] = handoff.grant.encode()
            try:
                child = domdata.open(url, host="h", lock_timeout=0.3)
            finally:
                del os.environ[ENV]
            with child:
                child.store(dom.domid, "xl", b"inside")
                assert child.retrieve(dom.domid, "xl") == b"inside"
                assert child.unlink(dom.domid, "xl")
                assert not child.unlink(dom.domid, "xl")
                child.store(dom.domid, "xl", b"again")
                with child.lock(dom.domid):
                    child.store(dom.domid, "xl", child.retrieve(dom.domid, "xl") + b"+")
                assert [item.userid for item in child.list(dom.domid)] == ["xl"]
                with pytest.raises(LockTimeout):
                    outsider.retrieve(dom.domid, "xl")
                ctx.destroy(dom.domid)
                for call in (
                    lambda: child.retrieve(dom.domid, "xl"),
                    lambda: child.store(dom.domid, "xl", b"late"),
                    lambda: child.unlink(dom.domid, "xl"),
                    lambda: child.list(dom.domid),
                ):
                    with pytest.raises(DomainNotFound):
                        call()
        assert outsider.list() == []


def _advisory_locks(raw: Any) -> int:
    count: int = raw.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
    ).fetchone()[0]
    return count


def test_the_lock_holds_across_calls(url: str, raw: Any) -> None:
    with domdata.open(url, host="h") as ctx, domdata.open(url, host="h", lock_timeout=0.2) as other:
        dom = ctx.managed.create()
        with ctx.lock(dom.domid):
            ctx.store(dom.domid, "n", b"1")
            ctx.store(dom.domid, "n", ctx.retrieve(dom.domid, "n") + b"2")
            assert _advisory_locks(raw) == 1
            with pytest.raises(LockTimeout):
                other.retrieve(dom.domid, "n")
            with pytest.raises(LockTimeout):
                other.store(dom.domid, "n", b"lost")
            with pytest.raises(LockTimeout), other.lock(dom.domid):
                pass
        assert _advisory_locks(raw) == 0
        assert other.retrieve(dom.domid, "n") == b"12"


def test_another_host_has_its_own_lock_for_the_same_domid(url: str) -> None:
    with domdata.open(url, host="a") as a, domdata.open(url, host="b", lock_timeout=0.2) as b:
        a.managed.create(domid=1)
        b.managed.create(domid=1)
        with a.lock(1):
            b.store(1, "xl", b"not blocked")
        assert b.retrieve(1, "xl") == b"not blocked"


def test_a_lost_session_fails_the_calls_it_guarded(url: str, raw: Any) -> None:
    with domdata.open(url, host="h") as ctx:
        dom = ctx.managed.create()
        with ctx.lock(dom.domid):
            ctx.store(dom.domid, "n", b"1")
            raw.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            )
            with pytest.raises(StoreUnavailable):
                ctx.store(dom.domid, "n", b"unguarded")
            with pytest.raises(StoreUnavailable, match="lost"):
                ctx.retrieve(dom.domid, "n")
        ctx.store(dom.domid, "n", b"2")
        assert ctx.retrieve(dom.domid, "n") == b"2"


# -- durability -----------------------------------------------------------


def _wal_syncs(raw: Any) -> int:
    raw.execute("SELECT pg_stat_clear_snapshot()")
    syncs: int = raw.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()[0]
    return syncs


def _syncs_of_20_stores(url: str, raw: Any, durable: bool) -> int:
    """WAL flushes the server made for 20 stores; the context's backend
    reports its statistics when it disconnects (on close)."""
    before = _wal_syncs(raw)
    with domdata.open(url, durable=durable) as ctx:
        dom = ctx.managed.create()
        for n in range(20):
            ctx.store(dom.domid, "xl", b"config %d" % n)
    deadline = time.monotonic() + 10
    while (after := _wal_syncs(raw)) - before < 20 and durable and time.monotonic() < deadline:
        time.sleep(0.05)  # the backend's exit, and its statistics, may come a moment later
    return after - before


def test_durable_by_default_whatever_the_server_says(url: str, raw: Any) -> None:
    database = raw.execute("SELECT current_database()").fetchone()[0]
    raw.execute(f'ALTER DATABASE "{database}" SET synchronous_commit = off')
    assert _syncs_of_20_stores(url, raw, durable=True) >= 20
    assert _syncs_of_20_stores(url, raw, durable=False) < 10


# -- migration ------------------------------------------------------------


def test_migration_to_another_host_carries_everything(url: str) -> None:
    with domdata.open(url, host="a") as a, domdata.open(url, host="b") as b:
        dom = a.managed.create("web", domid=3)
        a.store(3, "xl", b"config")
        a.store(3, "org.example.backup", b"state")
        assert a.migrate(3, to_domid=7, to_host="b") == 2
        with pytest.raises(DomainNotFound):
            a.retrieve(3, "xl")
        assert b.domains.find("web") == domdata.Domain(7, dom.uuid, "web")
        assert b.retrieve(7, "xl") == b"config"
        assert b.retrieve(7, "org.example.backup") == b"state"
        assert a.list() == []


def test_migration_onto_another_domain_moves_nothing(url: str) -> None:
    with domdata.open(url, host="a") as a, domdata.open(url, host="b") as b:
        a.managed.create(domid=3)
        b.managed.create(domid=7)
        a.store(3, "xl", b"config")
        with pytest.raises(DomainExists):
            a.migrate(3, to_domid=7, to_host="b")
        a.managed.create("db", domid=4)
        a.store(4, "xl", b"db config")
        b.managed.create("db", domid=8)
        with pytest.raises(DomainExists, match="name"):
            a.migrate(4, to_domid=9, to_host="b")
        assert a.retrieve(3, "xl") == b"config"
        assert a.retrieve(4, "xl") == b"db config"
        assert b.list(7) == []
        assert b.domains.by_domid(9) is None


def test_localhost_live_migration_keeps_both_apart_and_loses_nothing(url: str) -> None:
    with domdata.open(url, host="h") as ctx:
        old = ctx.managed.create("vm", domid=1)
        ctx.store(1, "xl", b"config")
        ctx.store(1, "org.example.backup", b"state")
        # The receiving domain: same uuid, another domid, both alive at once.
        new = ctx.managed.create(domid=2, uuid=old.uuid)
        assert [d.domid for d in ctx.domains.by_uuid(old.uuid)] == [1, 2]
        ctx.store(2, "libxl-json", b"{}\0")
        ctx.store(2, "xl", b"receiver's config")
        assert ctx.retrieve(1, "xl") == b"config"
        assert [i.userid for i in ctx.list(1)] == ["org.example.backup", "xl"]
        # Both have "xl": moving would overwrite one, so nothing moves.
        with pytest.raises(DomainExists, match="'xl'"):
            ctx.migrate(1, to_domid=2)
        assert ctx.retrieve(2, "xl") == b"receiver's config"
        assert ctx.unlink(2, "xl")
        assert ctx.migrate(1, to_domid=2) == 2
        assert ctx.destroy(1) == 0
        assert ctx.domains.by_uuid(new.uuid) == [new]
        assert {i.userid: i.size for i in ctx.list(2)} == {"libxl-json": 3, "org.example.backup": 5, "xl": 6}
        assert ctx.retrieve(2, "xl") == b"config"
