"""reap on a libxl directory: what it reads to find the dead and the debris, and what it keeps."""

from __future__ import annotations

import os
from pathlib import Path

import domdata
from domdata.stores.libxl import INDEX_PREFIX, record_name


def _lock_file(xen: Path, incarnation: domdata.Incarnation) -> Path:
    return xen / f"userdata-l.{incarnation.domid}.{incarnation.uuid}.domain-userdata-lock"


def test_reap_keeps_every_live_domains_index_link_and_removes_the_dangling_ones(
    xen: Path, ctx: domdata.Context
) -> None:
    with_item, without_item, crashed = (ctx.managed.create(name) for name in ("web1", "web2", "web3"))
    ctx.store(with_item.domid, "xl", b"kept")
    ctx.store(crashed.domid, "xl", b"dies")
    os.unlink(xen / record_name(crashed.incarnation))  # a crashed toolstack
    half_made = xen / f"{INDEX_PREFIX}9.new"  # a create killed between symlink and rename
    os.symlink(record_name(domdata.Incarnation(9, crashed.uuid)), half_made)
    report = ctx.reap()
    assert report.incarnations == [crashed.incarnation]
    assert report.leftovers == sorted([str(half_made), str(xen / f"{INDEX_PREFIX}{crashed.domid}")])
    # A fresh context has no cache: it finds each domain through its link alone.
    with domdata.open(f"libxl://{xen}") as fresh:
        assert fresh.retrieve(with_item.domid, "xl") == b"kept"
        assert fresh.retrieve(without_item.domid, "xl") == b""
        assert fresh.find(str(without_item.domid)) == without_item
    assert sorted(n for n in os.listdir(xen) if n.startswith(INDEX_PREFIX)) == [
        f"{INDEX_PREFIX}{with_item.domid}",
        f"{INDEX_PREFIX}{without_item.domid}",
    ]


def test_reap_keeps_the_lock_file_of_a_live_domain_with_no_item(xen: Path, ctx: domdata.Context) -> None:
    live = ctx.managed.create("web1")
    assert ctx.retrieve(live.domid, "xl") == b""  # the call made the lock file; it is kept
    orphan = domdata.Incarnation(live.domid + 1, live.uuid)
    _lock_file(xen, orphan).touch(mode=0o600)
    report = ctx.reap()
    assert report.leftovers == [str(_lock_file(xen, orphan))]
    assert _lock_file(xen, live.incarnation).exists()
    assert not _lock_file(xen, orphan).exists()


def test_reap_of_many_domains_collects_exactly_the_dead(xen: Path, ctx: domdata.Context) -> None:
    domains = [ctx.managed.create() for _ in range(40)]
    for dom in domains:
        ctx.store(dom.domid, "xl", str(dom.domid).encode())
    dead = domains[::4]
    for dom in dead:
        os.unlink(xen / record_name(dom.incarnation))
    report = ctx.reap()
    assert report.incarnations == [dom.incarnation for dom in dead]
    assert report.items == len(dead)
    with domdata.open(f"libxl://{xen}") as fresh:
        for dom in domains:
            if dom not in dead:
                assert fresh.retrieve(dom.domid, "xl") == str(dom.domid).encode()
    left = {name.split(".")[1] for name in os.listdir(xen) if name.startswith(("userdata-", INDEX_PREFIX))}
    assert left == {str(dom.domid) for dom in domains if dom not in dead}


def test_the_live_set_reap_reads_from_record_names_is_the_domains_themselves(
    xen: Path, ctx: domdata.Context
) -> None:
    domains = [ctx.managed.create(f"web{n}") for n in range(5)]
    os.unlink(xen / record_name(domains[2].incarnation))
    (xen / f"userdata-d.{domains[3].domid}.{domains[3].uuid}.xl").write_bytes(b"an item is no record")
    source = ctx.managed
    assert source.incarnations() == {d.incarnation for d in source.domains()}
    assert source.incarnations() == {d.incarnation for d in domains if d is not domains[2]}
