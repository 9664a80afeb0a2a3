"""DESIGN section 1, clause by clause, for every (store, source) combination."""

from __future__ import annotations

import pytest

import domdata
from domdata import Domain
from tests.kits import Setup

MiB = 1024 * 1024


# -- store / retrieve / unlink -------------------------------------------------


def test_retrieve_gives_back_what_was_stored(ctx: domdata.Context, dom: Domain) -> None:
    ctx.store(dom.domid, "xl", b"name = 'web1'\n")
    assert ctx.retrieve(dom.domid, "xl") == b"name = 'web1'\n"


def test_store_replaces_the_item(ctx: domdata.Context, dom: Domain) -> None:
    ctx.store(dom.domid, "xl", b"first version, longer than the second")
    ctx.store(dom.domid, "xl", b"second")
    assert ctx.retrieve(dom.domid, "xl") == b"second"


def test_every_byte_value_survives(ctx: domdata.Context, dom: Domain) -> None:
    data = bytes(range(256)) * 3 + b"\0"
    ctx.store(dom.domid, "libxl-json", data)
    assert ctx.retrieve(dom.domid, "libxl-json") == data


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bytes_like_data_is_accepted(ctx: domdata.Context, dom: Domain, kind: type) -> None:
    ctx.store(dom.domid, "app", kind(b"\x00\x01payload"))
    stored = ctx.retrieve(dom.domid, "app")
    assert type(stored) is bytes
    assert stored == b"\x00\x01payload"


def test_absent_item_is_empty_bytes_not_an_error(ctx: domdata.Context, dom: Domain) -> None:
    assert ctx.retrieve(dom.domid, "never-stored") == b""


def test_storing_empty_data_deletes(ctx: domdata.Context, dom: Domain) -> None:
    ctx.store(dom.domid, "xl", b"config")
    ctx.store(dom.domid, "xl", b"")
    assert ctx.retrieve(dom.domid, "xl") == b""
    assert [item.userid for item in ctx.list(dom.domid)] == []


def test_storing_empty_data_when_absent_succeeds(ctx: domdata.Context, dom: Domain) -> None:
    ctx.store(dom.domid, "xl", b"")
    assert ctx.retrieve(dom.domid, "xl") == b""


def test_unlink_says_whether_something_was_there(ctx: domdata.Context, dom: Domain) -> None:
    ctx.store(dom.domid, "xl", b"config")
    assert ctx.unlink(dom.domid, "xl") is True
    assert ctx.unlink(dom.domid, "xl") is False
    assert ctx.retrieve(dom.domid, "xl") == b""


def test_items_are_per_userid(ctx: domdata.Context, dom: Domain) -> None:
    ctx.store(dom.domid, "xl", b"xl config")
    ctx.store(dom.domid, "libvirt-xml", b"<domain/>")
    ctx.unlink(dom.domid, "xl")
    assert ctx.retrieve(dom.domid, "libvirt-xml") == b"<domain/>"


def test_items_are_per_domain(setup: Setup, ctx: domdata.Context, dom: Domain) -> None:
    other = setup.source.create(ctx)
    ctx.store(dom.domid, "xl", b"mine")
    ctx.store(other.domid, "xl", b"theirs")
    assert ctx.retrieve(dom.domid, "xl") == b"mine"
    assert ctx.retrieve(other.domid, "xl") == b"theirs"


def test_another_context_sees_the_item(setup: Setup, ctx: domdata.Context, dom: Domain) -> None:
    ctx.store(dom.domid, "xl", b"shared")
    with setup.context() as other:
        assert other.retrieve(dom.domid, "xl") == b"shared"


def test_non_durable_context_keeps_the_same_contract(setup: Setup, dom: Domain) -> None:
    with setup.context(durable=False) as fast:
        fast.store(dom.domid, "xl", b"quick")
        assert fast.retrieve(dom.domid, "xl") == b"quick"
    with setup.context() as ctx:
        assert ctx.retrieve(dom.domid, "xl") == b"quick"


# -- list ---------------------------------------------------------------------


def test_list_gives_userids_and_sizes(ctx: domdata.Context, dom: Domain) -> None:
    ctx.store(dom.domid, "xl", b"12345")
    ctx.store(dom.domid, "libvirt-xml", b"1234567890")
    items = ctx.list(dom.domid)
    assert [(i.userid, i.size) for i in items] == [("libvirt-xml", 10), ("xl", 5)]
    assert {(i.domid, i.uuid) for i in items} == {(dom.domid, dom.uuid)}


def test_list_without_domain_lists_the_whole_store(setup: Setup, ctx: domdata.Context, dom: Domain) -> None:
    other = setup.source.create(ctx)
    ctx.store(dom.domid, "xl", b"a")
    ctx.store(other.domid, "xl", b"bb")
    listed = {(i.domid, i.userid, i.size) for i in ctx.list()}
    assert listed == {(dom.domid, "xl", 1), (other.domid, "xl", 2)}


# -- the domain must exist ---------------------------------------------------


def _unused_domid(ctx: domdata.Context) -> int:
    taken = {d.domid for d in ctx.domains.domains()}
    return next(n for n in range(4000, 5000) if n not in taken)


def test_calls_on_a_domid_with_no_domain_raise_domain_not_found(ctx: domdata.Context, dom: Domain) -> None:
    ghost = _unused_domid(ctx)
    for call in (
        lambda: ctx.store(ghost, "xl", b"data"),
        lambda: ctx.retrieve(ghost, "xl"),
        lambda: ctx.unlink(ghost, "xl"),
        lambda: ctx.list(ghost),
    ):
        with pytest.raises(domdata.DomainNotFound) as caught:
            call()
        assert f"domain {ghost}" in str(caught.value)
        assert ctx.store_url in str(caught.value)
    assert not [i for i in ctx.list() if i.domid == ghost]


def test_domain_not_found_is_a_domdata_error(ctx: domdata.Context) -> None:
    with pytest.raises(domdata.DomainNotFound) as caught:
        ctx.retrieve(_unused_domid(ctx), "xl")
    assert isinstance(caught.value, domdata.Error)


def test_destroyed_domain_has_no_data_and_refuses_calls(
    setup: Setup, ctx: domdata.Context, dom: Domain
) -> None:
    other = setup.source.create(ctx)
    ctx.store(dom.domid, "xl", b"a")
    ctx.store(dom.domid, "app", b"b")
    ctx.store(other.domid, "xl", b"kept")
    assert ctx.destroy(dom.domid) == 2
    assert [i for i in ctx.list() if i.domid == dom.domid] == []
    assert ctx.retrieve(other.domid, "xl") == b"kept"
    if setup.source.managed:
        with pytest.raises(domdata.DomainNotFound):
            ctx.store(dom.domid, "xl", b"too late")


def test_a_new_incarnation_sees_none_of_the_old_data(setup: Setup, ctx: domdata.Context, dom: Domain) -> None:
    ctx.store(dom.domid, "xl", b"old incarnation")
    setup.end(ctx, dom)
    new = setup.source.reincarnate(ctx, dom)
    assert (new.domid, new.uuid) != (dom.domid, dom.uuid)
    assert ctx.retrieve(new.domid, "xl") == b""
    assert ctx.list(new.domid) == []


def test_ended_incarnation_refuses_calls(setup: Setup, ctx: domdata.Context, dom: Domain) -> None:
    ctx.store(dom.domid, "xl", b"left behind")
    setup.end(ctx, dom)
    with pytest.raises(domdata.DomainNotFound):
        ctx.retrieve(dom.domid, "xl")
    with pytest.raises(domdata.DomainNotFound):
        ctx.store(dom.domid, "xl", b"more")


def test_two_incarnations_sharing_a_uuid_are_kept_apart(setup: Setup, ctx: domdata.Context) -> None:
    if not setup.source.managed:
        pytest.skip("only the managed source can run two domains with one uuid (localhost migration)")
    source = ctx.managed.create(domid=40)
    ctx.managed.create(domid=41, uuid=source.uuid)
    ctx.store(40, "xl", b"source side")
    ctx.store(41, "xl", b"target side")
    assert ctx.destroy(40) == 1
    assert ctx.retrieve(41, "xl") == b"target side"


# -- destroy and reap -----------------------------------------------------------


def test_destroying_an_ended_incarnation_collects_its_data(
    setup: Setup, ctx: domdata.Context, dom: Domain
) -> None:
    ctx.store(dom.domid, "xl", b"orphan")
    setup.end(ctx, dom)
    assert ctx.destroy(dom.incarnation) == 1
    assert [i for i in ctx.list() if i.domid == dom.domid] == []


def test_destroying_a_live_incarnation_by_value_keeps_its_data(ctx: domdata.Context, dom: Domain) -> None:
    ctx.store(dom.domid, "xl", b"alive")
    assert ctx.destroy(dom.incarnation) == 0
    assert ctx.retrieve(dom.domid, "xl") == b"alive"


def test_reap_collects_dead_incarnations_only(setup: Setup, ctx: domdata.Context, dom: Domain) -> None:
    survivor = setup.source.create(ctx)
    ctx.store(dom.domid, "xl", b"dies")
    ctx.store(dom.domid, "app", b"dies too")
    ctx.store(survivor.domid, "xl", b"lives")
    setup.end(ctx, dom)
    dry = ctx.reap(dry_run=True)
    assert dry.incarnations == [dom.incarnation]
    assert dry.items == 2
    assert len([i for i in ctx.list() if i.domid == dom.domid]) == 2
    report = ctx.reap(force=True)
    assert report.incarnations == [dom.incarnation]
    assert report.items == 2
    assert [i.domid for i in ctx.list()] == [survivor.domid]
    assert ctx.retrieve(survivor.domid, "xl") == b"lives"
    assert ctx.reap(force=True).incarnations == []


# -- the per-domain lock ----------------------------------------------------------


def test_calls_inside_the_lock_use_it(ctx: domdata.Context, dom: Domain) -> None:
    ctx.store(dom.domid, "counter", b"1")
    with ctx.lock(dom.domid) as incarnation:
        assert incarnation == dom.incarnation
        value = int(ctx.retrieve(dom.domid, "counter"))
        ctx.store(dom.domid, "counter", str(value + 1).encode())
        with ctx.lock(dom.domid):
            assert ctx.list(dom.domid)[0].userid == "counter"
    assert ctx.retrieve(dom.domid, "counter") == b"2"


def test_a_held_lock_makes_other_contexts_wait(setup: Setup, ctx: domdata.Context, dom: Domain) -> None:
    ctx.store(dom.domid, "xl", b"before")
    with setup.context(lock_timeout=0.3) as other:
        with ctx.lock(dom.domid):
            with pytest.raises(domdata.LockTimeout) as caught:
                other.store(dom.domid, "xl", b"intruder")
            assert f"domain {dom.domid}" in str(caught.value)
            with pytest.raises(domdata.LockTimeout):
                other.retrieve(dom.domid, "xl")
        assert ctx.retrieve(dom.domid, "xl") == b"before"
        other.store(dom.domid, "xl", b"after")
    assert ctx.retrieve(dom.domid, "xl") == b"after"


def test_lock_of_another_domain_does_not_block(setup: Setup, ctx: domdata.Context, dom: Domain) -> None:
    other_dom = setup.source.create(ctx)
    with setup.context(lock_timeout=0.3) as other, ctx.lock(dom.domid):
        other.store(other_dom.domid, "xl", b"free")
        assert other.retrieve(other_dom.domid, "xl") == b"free"


def test_lock_on_a_missing_domain_raises(ctx: domdata.Context, dom: Domain) -> None:
    with pytest.raises(domdata.DomainNotFound), ctx.lock(_unused_domid(ctx)):
        pytest.fail("the lock was granted for a domain that does not exist")


def test_destroy_inside_the_lock_ends_the_domain_for_later_calls(
    setup: Setup, ctx: domdata.Context, dom: Domain
) -> None:
    ctx.store(dom.domid, "xl", b"x")
    with ctx.lock(dom.domid):
        ctx.destroy(dom.domid)
        with pytest.raises(domdata.DomainNotFound):
            ctx.store(dom.domid, "xl", b"resurrected?")
    assert [i for i in ctx.list() if i.domid == dom.domid] == []


def test_one_lock_object_entered_twice_is_refused_and_leaks_nothing(
    setup: Setup, ctx: domdata.Context, dom: Domain
) -> None:
    held = ctx.lock(dom.domid)
    with held:
        with pytest.raises(RuntimeError, match="already entered"), held:
            pytest.fail("one ctx.lock() entered twice at once")
        ctx.store(dom.domid, "xl", b"inside")
    # The outer block released the lock: another context gets it at once.
    with setup.context(lock_timeout=0.3) as other:
        other.store(dom.domid, "xl", b"after")
        assert other.retrieve(dom.domid, "xl") == b"after"
    with held:  # and the object may be used again, once left
        assert ctx.retrieve(dom.domid, "xl") == b"after"


def test_lock_is_released_when_the_block_raises(setup: Setup, ctx: domdata.Context, dom: Domain) -> None:
    with pytest.raises(RuntimeError), ctx.lock(dom.domid):
        raise RuntimeError("the caller's own failure")
    with setup.context(lock_timeout=0.3) as other:
        other.store(dom.domid, "xl", b"lock was released")
