"""The libxl store on disk: libxl's names, modes and bytes, symlinks, destroy, reap."""

from __future__ import annotations

import fcntl
import glob
import json
import os
import stat
import subprocess
import uuid as _uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import domdata
from domdata import Domain, XenView
from domdata.stores import StoreOptions, open_store
from domdata.stores.libxl import LibxlStore, record_name
from tests.kits.source_libvirt import need_libvirt
from tests.libxl.test_lock import libxl_lock, libxl_unlock


@pytest.fixture
def dom(ctx: domdata.Context) -> Domain:
    return ctx.managed.create("web1")


def _path(xen: Path, kind: str, dom: Domain, userid: str) -> Path:
    return xen / f"userdata-{kind}.{dom.domid}.{dom.uuid}.{userid}"


def _files(xen: Path) -> list[str]:
    return sorted(os.listdir(xen))


def libxl_destroyall(xen: Path, dom: Domain) -> None:
    """What libxl's domain destroy does: under the domain's lock, glob the domain's
    files and unlink all but the lock; then unlock (unlink the lock file, close)."""
    lock = str(xen / f"userdata-l.{dom.domid}.{dom.uuid}.domain-userdata-lock")
    fd = libxl_lock(lock)
    for path in glob.glob(str(xen / f"userdata-?.{dom.domid}.{dom.uuid}.*")):
        if "domain-userdata-lock" not in path:
            os.unlink(path)
    libxl_unlock(lock, fd)


# -- names, modes, bytes ----------------------------------------------------------


def test_store_writes_the_raw_bytes_at_libxls_name_with_mode_0600(
    xen: Path, ctx: domdata.Context, dom: Domain
) -> None:
    data = bytes(range(256)) * 3
    ctx.store(dom.domid, "xl", data)
    item = _path(xen, "d", dom, "xl")
    assert item.read_bytes() == data
    assert stat.S_IMODE(item.stat().st_mode) == 0o600
    assert not _path(xen, "n", dom, "xl").exists()


def test_uuid_is_written_in_lower_case(xen: Path, ctx: domdata.Context) -> None:
    upper = str(_uuid.uuid4()).upper()
    dom = ctx.managed.create(uuid=upper)
    ctx.store(dom.domid, "xl", b"x")
    assert f"userdata-d.{dom.domid}.{upper.lower()}.xl" in _files(xen)


def test_items_libxl_wrote_are_read_byte_exact(xen: Path, ctx: domdata.Context, dom: Domain) -> None:
    config = b'{"c_info": {"name": "web1"}}\x00'
    _path(xen, "d", dom, "libxl-json").write_bytes(config)
    assert ctx.retrieve(dom.domid, "libxl-json") == config
    assert [(i.userid, i.size) for i in ctx.list(dom.domid)] == [("libxl-json", len(config))]


def test_an_empty_item_file_is_corrupt(xen: Path, ctx: domdata.Context, dom: Domain) -> None:
    _path(xen, "d", dom, "xl").write_bytes(b"")
    with pytest.raises(domdata.CorruptItem, match="empty"):
        ctx.retrieve(dom.domid, "xl")


def test_a_stale_temp_is_replaced_by_a_fresh_0600_file(xen: Path, ctx: domdata.Context, dom: Domain) -> None:
    temp = _path(xen, "n", dom, "xl")
    temp.write_bytes(b"debris of a killed writer, much longer than the new item")
    temp.chmod(0o644)
    ctx.store(dom.domid, "xl", b"new")
    item = _path(xen, "d", dom, "xl")
    assert item.read_bytes() == b"new"
    assert stat.S_IMODE(item.stat().st_mode) == 0o600
    assert not temp.exists()


def test_the_store_refuses_a_userid_that_names_another_directory(xen: Path, dom: Domain) -> None:
    store = open_store(f"libxl://{xen}", StoreOptions())
    try:
        with pytest.raises(domdata.InvalidUserid):
            store.put(dom.incarnation, "../../etc/passwd", b"x")
    finally:
        store.close()
    assert not (xen.parent / "etc").exists()


# -- symbolic links are never followed ----------------------------------------------


def test_a_link_planted_at_the_temp_path_is_removed_not_written_through(
    tmp_path: Path, xen: Path, ctx: domdata.Context, dom: Domain
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    _path(xen, "n", dom, "xl").symlink_to(victim)
    ctx.store(dom.domid, "xl", b"data")
    assert victim.read_bytes() == b"precious"
    assert ctx.retrieve(dom.domid, "xl") == b"data"
    assert not _path(xen, "n", dom, "xl").is_symlink()


def test_a_link_planted_at_the_item_path_is_corrupt_and_replaced_by_store(
    tmp_path: Path, xen: Path, ctx: domdata.Context, dom: Domain
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    item = _path(xen, "d", dom, "xl")
    item.symlink_to(victim)
    with pytest.raises(domdata.CorruptItem, match="symbolic link"):
        ctx.retrieve(dom.domid, "xl")
    ctx.store(dom.domid, "xl", b"data")
    assert not item.is_symlink()
    assert item.read_bytes() == b"data"
    assert victim.read_bytes() == b"precious"


def test_a_link_planted_at_the_lock_path_is_a_clear_error(
    tmp_path: Path, xen: Path, ctx: domdata.Context, dom: Domain
) -> None:
    target = tmp_path / "not-a-lock"
    _path(xen, "l", dom, "domain-userdata-lock").symlink_to(target)
    with pytest.raises(domdata.StoreUnavailable, match="symbolic link") as caught:
        ctx.store(dom.domid, "xl", b"data")
    assert f"domain {dom.domid}" in str(caught.value)
    assert not target.exists()
    assert not _path(xen, "d", dom, "xl").exists()


# -- managed domains --------------------------------------------------------------------


def test_a_managed_domain_is_a_record_file_hidden_from_items(
    xen: Path, ctx: domdata.Context, dom: Domain
) -> None:
    record = xen / record_name(dom.incarnation)
    assert json.loads(record.read_bytes()) == {"name": "web1"}
    assert ctx.list(dom.domid) == []
    assert ctx.list() == []
    assert ctx.domains.find("web1") == dom


def test_libxls_own_destroy_takes_the_managed_domain_with_it(
    xen: Path, ctx: domdata.Context, dom: Domain
) -> None:
    ctx.store(dom.domid, "xl", b"config")
    libxl_destroyall(xen, dom)
    assert [f for f in _files(xen) if f.startswith("userdata-")] == []
    with pytest.raises(domdata.DomainNotFound):
        ctx.retrieve(dom.domid, "xl")
    assert ctx.domains.domains() == []
    report = ctx.reap()
    assert report.incarnations == []
    assert report.leftovers == [str(xen / f"domdata-domid.{dom.domid}")]  # its index link, now dangling
    reborn = ctx.managed.create(domid=dom.domid)
    assert ctx.domains.find(str(dom.domid)) == reborn


def test_records_of_other_processes_are_seen_and_their_removal_too(xen: Path, ctx: domdata.Context) -> None:
    with domdata.open(f"libxl://{xen}") as other:
        created = other.managed.create("db1")
        assert ctx.domains.find(str(created.domid)) == created
        ctx.store(created.domid, "xl", b"x")
        other.destroy(created.domid)
    with pytest.raises(domdata.DomainNotFound):
        ctx.retrieve(created.domid, "xl")


# -- destroy and reap -------------------------------------------------------------------


def test_destroy_removes_every_file_of_the_incarnation(xen: Path, ctx: domdata.Context, dom: Domain) -> None:
    other = ctx.managed.create("db1")
    ctx.store(dom.domid, "xl", b"a")
    ctx.store(dom.domid, "libvirt-xml", b"<domain/>")
    ctx.store(other.domid, "xl", b"kept")
    _path(xen, "n", dom, "xl").write_bytes(b"temp debris")
    assert _path(xen, "l", dom, "domain-userdata-lock").exists()  # kept between calls
    assert ctx.destroy(dom.domid) == 2
    assert [f for f in _files(xen) if f".{dom.domid}." in f] == []
    assert ctx.retrieve(other.domid, "xl") == b"kept"


def test_reap_removes_dead_incarnations_stale_temps_and_unheld_stale_locks(
    xen: Path, ctx: domdata.Context, dom: Domain
) -> None:
    live = ctx.managed.create("db1")
    ctx.store(dom.domid, "xl", b"dies")
    ctx.store(live.domid, "xl", b"lives")
    os.unlink(xen / record_name(dom.incarnation))  # a crashed toolstack
    ghost = domdata.Incarnation(77, str(_uuid.uuid4()))
    busy = domdata.Incarnation(78, str(_uuid.uuid4()))
    temp = xen / f"userdata-n.{live.domid}.{live.uuid}.xl"
    temp.write_bytes(b"killed writer")
    stale_lock = xen / f"userdata-l.{ghost.domid}.{ghost.uuid}.domain-userdata-lock"
    stale_lock.touch()
    busy_lock = xen / f"userdata-l.{busy.domid}.{busy.uuid}.domain-userdata-lock"
    holder = os.open(busy_lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        report = ctx.reap()
        assert report.incarnations == [dom.incarnation]
        assert report.items == 1
        # The crashed domain's index link now names no record: debris too.
        assert report.leftovers == sorted(
            [str(temp), str(stale_lock), str(xen / f"domdata-domid.{dom.domid}")]
        )
        assert busy_lock.exists()
    finally:
        os.close(holder)
    assert [f for f in _files(xen) if f".{dom.domid}." in f] == []
    assert not temp.exists()
    assert not stale_lock.exists()
    assert ctx.retrieve(live.domid, "xl") == b"lives"


def test_dry_run_reports_leftovers_and_removes_nothing(xen: Path, ctx: domdata.Context, dom: Domain) -> None:
    temp = _path(xen, "n", dom, "xl")
    temp.write_bytes(b"killed writer")
    before = _files(xen)
    assert ctx.reap(dry_run=True).leftovers == [str(temp)]
    assert _files(xen) == before


# -- reap refuses a directory libxl shares unless Xen is the source ---------------------


def test_reap_refuses_a_directory_with_libxl_domains_unless_forced(
    xen: Path, ctx: domdata.Context, dom: Domain
) -> None:
    libxl_dom = Domain(5, str(_uuid.uuid4()))
    config = _path(xen, "d", libxl_dom, "libxl-json")
    config.write_bytes(b"{}\x00")
    with pytest.raises(domdata.ReapRefused, match=r"libvirt:xen:///system"):
        ctx.reap()
    assert config.exists()
    assert ctx.reap(dry_run=True).incarnations == [libxl_dom.incarnation]
    assert ctx.reap(force=True).incarnations == [libxl_dom.incarnation]
    assert not config.exists()


@pytest.mark.parametrize(
    ("view", "allowed"), [(XenView.ALL, True), (XenView.LIBVIRT, True), (XenView.NONE, False)]
)
def test_only_a_source_that_sees_xen_may_reap_a_directory_libxl_shares(
    xen: Path, view: XenView, allowed: bool
) -> None:
    store = LibxlStore(f"libxl://{xen}", StoreOptions())
    try:
        store.check_reap(view)  # nothing of libxl's there yet: anyone may reap
        # A domain libvirt's libxl driver created: libxl-json and libvirt-xml.
        uuid = _uuid.uuid4()
        (xen / f"userdata-d.3.{uuid}.libxl-json").write_bytes(b"{}\x00")
        (xen / f"userdata-d.3.{uuid}.libvirt-xml").write_bytes(b"<domain/>")
        if allowed:
            store.check_reap(view)
        else:
            with pytest.raises(domdata.ReapRefused):
                store.check_reap(view)
    finally:
        store.close()


def test_managed_reap_is_refused_on_a_directory_of_libxl_domains(xen: Path) -> None:
    uuid = _uuid.uuid4()
    item = xen / f"userdata-d.3.{uuid}.libxl-json"
    item.write_bytes(b"{}\x00")
    with domdata.open(f"libxl://{xen}") as ctx, pytest.raises(domdata.ReapRefused, match="libxl created"):
        ctx.reap()
    assert item.read_bytes() == b"{}\x00"


def test_libvirt_cannot_vouch_for_a_domain_xl_created(xen: Path) -> None:
    # libvirt does not see domains started with `xl create` (they have an xl
    # item, no libvirt-xml): to libvirt they would look dead. Xen sees them all.
    store = LibxlStore(f"libxl://{xen}", StoreOptions())
    try:
        uuid = _uuid.uuid4()
        (xen / f"userdata-d.4.{uuid}.libxl-json").write_bytes(b"{}\x00")
        (xen / f"userdata-d.4.{uuid}.xl").write_bytes(b'name = "web1"\n')
        with pytest.raises(domdata.ReapRefused, match="outside libvirt"):
            store.check_reap(XenView.LIBVIRT)
        store.check_reap(XenView.ALL)
    finally:
        store.close()


# -- a full disk ------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=False)
    if done.returncode != 0:
        if os.environ.get("CI"):
            raise AssertionError("CI runs as root: mounting a tmpfs must work")
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_fails_store_clearly_and_keeps_the_old_item(small_disk: Path) -> None:
    with domdata.open(f"libxl://{small_disk}") as ctx:
        dom = ctx.managed.create()
        ctx.store(dom.domid, "xl", b"old")
        with pytest.raises(domdata.StoreUnavailable) as caught:
            ctx.store(dom.domid, "xl", b"x" * (1024 * 1024))
        message = str(caught.value)
        assert f"store libxl://{small_disk}" in message
        assert f"domain {dom.domid}" in message
        assert "userid 'xl'" in message
        assert "No space left" in message
        assert ctx.retrieve(dom.domid, "xl") == b"old"
        assert not _path(small_disk, "n", dom, "xl").exists()


def test_destroy_removes_libxls_other_lock_files_only_when_free(
    xen: Path, ctx: domdata.Context, dom: Domain
) -> None:
    other = ctx.managed.create("db1")
    free = _path(xen, "l", dom, "libxl-device-changes-lock")
    free.touch()
    held = _path(xen, "l", other, "libxl-device-changes-lock")
    holder = os.open(held, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # libxl's device-changes lock, held
        ctx.destroy(dom.domid)
        ctx.destroy(other.domid)
        assert not free.exists()
        assert held.exists()
    finally:
        os.close(holder)


def test_without_durability_items_are_the_same_files(xen: Path) -> None:
    with domdata.open(f"libxl://{xen}", durable=False) as ctx:
        dom = ctx.managed.create()
        ctx.store(dom.domid, "xl", b"fast")
        item = _path(xen, "d", dom, "xl")
        assert item.read_bytes() == b"fast"
        assert stat.S_IMODE(item.stat().st_mode) == 0o600
        assert ctx.retrieve(dom.domid, "xl") == b"fast"


def test_a_broken_record_index_fails_cleanly_and_releases_the_lock(tmp_path: Path) -> None:
    url = f"libxl://{tmp_path}"
    with domdata.open(url) as ctx:
        dom = ctx.managed.create()
        ctx.store(dom.domid, "xl", b"x")
    with domdata.open(url) as ctx:
        ctx.retrieve(dom.domid, "xl")  # caches the record
        index = tmp_path / f"domdata-domid.{dom.domid}"
        index.unlink()
        index.mkdir()
        (tmp_path / record_name(dom.incarnation)).unlink()
        with pytest.raises(domdata.StoreUnavailable):
            ctx.retrieve(dom.domid, "xl")
        # The failed call let go of the domain's lock (found ended under it, the
        # lock file was unlinked before closing): libxl could take it now.
        lock = tmp_path / f"userdata-l.{dom.domid}.{dom.uuid}.domain-userdata-lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def test_a_directory_where_a_record_should_be_is_a_store_error(tmp_path: Path) -> None:
    url = f"libxl://{tmp_path}"
    (tmp_path / record_name(domdata.Incarnation(3, "6695eb01-f6a4-8304-79aa-97f2502e193f"))).mkdir()
    with domdata.open(url) as ctx, pytest.raises(domdata.StoreUnavailable, match="domain record"):
        ctx.domains.domains()


def test_a_directory_of_libxl_domains_is_governed_only_by_a_source_that_sees_xen(xen: Path) -> None:
    item = xen / f"userdata-d.3.{_uuid.uuid4()}.libxl-json"
    item.write_bytes(b"{}\x00")
    need_libvirt()
    with pytest.raises(domdata.SourceMismatch, match="only a source that sees Xen's domains"):
        domdata.open(f"libxl://{xen}", "libvirt:test:///default")
    assert sorted(os.listdir(xen)) == [item.name]  # nothing recorded, nothing written
