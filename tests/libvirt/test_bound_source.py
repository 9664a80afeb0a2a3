"""A store is governed by one domain source (DESIGN section 3): recorded the
first time, used when none is named, and no other one is taken, so that no
misnamed source can cost live domains their data. And reap confirms each
death with the source before deleting anything."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import domdata
from domdata import Incarnation
from domdata.stores import StoreOptions, open_store
from tests.kits import STORE_KITS
from tests.kits.source_libvirt import KIT, URI, Libvirtd, domain_xml, need_libvirt

LIBVIRT = f"libvirt:{URI}"

try:
    from domdata.domains.libvirt import LibvirtDomains
except ImportError:  # need_libvirt() skips the tests (never in CI)
    LibvirtDomains = object  # type: ignore[assignment,misc]


@pytest.fixture(params=sorted(STORE_KITS))
def url(request: pytest.FixtureRequest, tmp_path: Path, kits: None) -> str:
    return STORE_KITS[request.param].url(tmp_path)


def _items(url: str) -> list[domdata.Item]:
    with domdata.open(url) as ctx:
        return list(ctx.list())


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "domdata", "--store", url, *args], capture_output=True, text=True, timeout=60
    )


def test_the_first_source_used_is_recorded_and_used_when_none_is_named(url: str) -> None:
    need_libvirt()
    with domdata.open(url, LIBVIRT) as ctx:
        assert ctx.bound_source == LIBVIRT
        dom = KIT.create(ctx)
        ctx.store(dom.domid, "xl", b"lives")
    with domdata.open(url) as ctx:
        assert ctx.domains.spec == LIBVIRT
        report = ctx.reap()
        assert report.incarnations == []
        assert ctx.retrieve(dom.domid, "xl") == b"lives"


def test_reap_without_a_source_keeps_libvirt_domains_data(url: str) -> None:
    # The first scenario: reap without --domains on a store libvirt's domains fill.
    need_libvirt()
    with domdata.open(url, LIBVIRT) as ctx:
        doms = [KIT.create(ctx) for _ in range(3)]
        for dom in doms:
            ctx.store(dom.domid, "xl", b"config")
    before = _items(url)
    with domdata.open(url) as ctx:
        assert ctx.reap().items == 0
    assert _items(url) == before


def test_another_source_is_refused_before_anything_is_read_or_written(url: str) -> None:
    # The reverse: a libvirt reap on a store of managed domains.
    need_libvirt()
    with domdata.open(url) as ctx:
        dom = ctx.managed.create("web")
        ctx.store(dom.domid, "xl", b"managed config")
    before = _items(url)
    with pytest.raises(domdata.SourceMismatch) as caught:
        domdata.open(url, LIBVIRT)
    message = str(caught.value)
    assert "governed by the domain source managed" in message
    assert LIBVIRT in message
    assert "\n" not in message
    assert _items(url) == before
    with domdata.open(url) as ctx:
        assert ctx.domains.domains() == [dom]
        assert ctx.retrieve(dom.domid, "xl") == b"managed config"


def test_the_cli_refuses_with_its_own_status_and_loses_nothing(url: str) -> None:
    need_libvirt()
    with domdata.open(url) as ctx:
        dom = ctx.managed.create("web")
        ctx.store(dom.domid, "xl", b"managed config")
    before = _items(url)
    done = _cli(url, "--domains", LIBVIRT, "reap")
    assert done.returncode == 15, done.stderr
    assert done.stderr.count("\n") == 1
    assert "governed by the domain source managed" in done.stderr
    assert _items(url) == before


def test_bind_changes_the_source_and_says_what_it_was(url: str) -> None:
    need_libvirt()
    with domdata.open(url) as ctx:
        ctx.managed.create("web")
    done = _cli(url, "bind", LIBVIRT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"domain source: was managed, now {LIBVIRT}\n"
    with domdata.open(url) as ctx:
        assert ctx.domains.spec == LIBVIRT
    with pytest.raises(domdata.SourceMismatch, match=f"governed by the domain source {LIBVIRT}"):
        domdata.open(url, "managed")


def test_a_store_that_holds_nothing_takes_any_source(url: str) -> None:
    need_libvirt()
    with domdata.open(url) as ctx:
        assert ctx.bound_source == "managed"
    with domdata.open(url, LIBVIRT) as ctx:
        assert ctx.bound_source == LIBVIRT


def test_a_store_of_an_older_domdata_is_governed_by_what_it_holds(tmp_path: Path) -> None:
    # Schema 1 recorded no source: a store with managed domains is managed's;
    # one with items only waits for a source to be named before reaping.
    need_libvirt()
    url = f"sqlite://{tmp_path / 'old.db'}"
    with domdata.open(url, LIBVIRT) as ctx:
        dom = KIT.create(ctx)
        ctx.store(dom.domid, "xl", b"from libvirt")
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.execute("DELETE FROM meta")
    with domdata.open(url) as ctx, pytest.raises(domdata.ReapRefused, match="records no domain source"):
        ctx.reap()
    with domdata.open(url) as ctx:
        assert ctx.bound_source is None
        assert ctx.reap(dry_run=True).items == 1  # what a blind managed reap would have deleted
    with domdata.open(url, LIBVIRT) as ctx:
        assert ctx.bound_source == LIBVIRT
        assert ctx.reap().items == 0
        assert ctx.retrieve(dom.domid, "xl") == b"from libvirt"


def test_the_source_is_recorded_per_host_on_a_cluster_store(tmp_path: Path, kits: None) -> None:
    need_libvirt()
    url = STORE_KITS["postgresql"].url(tmp_path)
    with domdata.open(url, host="xen-07") as ctx:
        ctx.managed.create("web")
    with domdata.open(url, LIBVIRT, host="xen-09") as ctx:
        dom = KIT.create(ctx)
        ctx.store(dom.domid, "xl", b"on xen-09")
        assert ctx.bound_source == LIBVIRT
    with domdata.open(url, host="xen-07") as ctx:
        assert ctx.domains.spec == "managed"
    with pytest.raises(domdata.SourceMismatch):
        domdata.open(url, "managed", host="xen-09").close()


def test_reap_by_the_cli_without_a_source_asks_the_recorded_one(url: str, libvirtd: Libvirtd) -> None:
    source = f"libvirt:{libvirtd.uri}"
    conn = need_libvirt().open(libvirtd.uri)
    try:
        with domdata.open(url, source) as ctx:
            doms = [conn.createXML(domain_xml(f"cli-{n}"), 0) for n in range(3)]
            for dom in doms:
                ctx.store(dom.ID(), "xl", b"config")
        before = _items(url)
        done = _cli(url, "reap")
        assert done.returncode == 0, done.stderr
        assert done.stdout.endswith("removed 0 items of 0 dead incarnations\n")
        assert _items(url) == before
        doms[0].destroy()
        assert _cli(url, "reap").returncode == 0
        assert len(_items(url)) == 2
    finally:
        conn.close()


class _ListingMissesOne(LibvirtDomains):
    """The real libvirt source, whose listing leaves out one live domain, as
    an access-controlled or truncated listing does."""

    def __init__(self, uri: str, hidden: Incarnation) -> None:
        super().__init__(uri)
        self._hidden = hidden

    def incarnations(self) -> set[Incarnation]:
        return super().incarnations() - {self._hidden}


def test_reap_confirms_each_death_before_deleting(url: str) -> None:
    need_libvirt()
    with domdata.open(url, LIBVIRT) as ctx:
        hidden, dead = KIT.create(ctx), KIT.create(ctx)
        ctx.store(hidden.domid, "xl", b"alive, unlisted")
        ctx.store(dead.domid, "xl", b"dead")
        KIT.end(ctx, dead)
    store = open_store(url, StoreOptions())
    with domdata.Context(store, _ListingMissesOne(URI, hidden.incarnation)) as ctx:
        report = ctx.reap()
        assert report.incarnations == [dead.incarnation]
        assert ctx.retrieve(hidden.domid, "xl") == b"alive, unlisted"
