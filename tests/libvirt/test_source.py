"""The ``libvirt:<uri>`` domain source, against libvirt's own test driver."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid as _uuid
from pathlib import Path

import pytest

import domdata
from domdata import Domain, Incarnation
from tests.kits import STORE_KITS
from tests.kits.source_libvirt import KIT, URI, Libvirtd, domain_xml, need_libvirt

#: The built-in domain of every fresh ``test:///default``.
TEST_DOMAIN = Incarnation(1, "6695eb01-f6a4-8304-79aa-97f2502e193f")

# Three running domains without uuids (each open of the file draws new ones)
# and one defined but shut off (runstate 5).
NODE_XML = """\
<node xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
  <domain type='test'><name>alpha</name><memory>1024</memory><os><type>hvm</type></os></domain>
  <domain type='test'><name>beta</name><memory>1024</memory><os><type>hvm</type></os></domain>
  <domain type='test'><name>gamma</name><memory>1024</memory><os><type>hvm</type></os></domain>
  <domain type='test'><name>idle</name><memory>1024</memory><os><type>hvm</type></os>
    <test:runstate>5</test:runstate></domain>
</node>
"""


@pytest.fixture
def node(tmp_path: Path) -> str:
    path = tmp_path / "node.xml"
    path.write_text(NODE_XML)
    return f"test://{path}"


def test_a_running_domain_is_its_id_and_uuid(ctx: domdata.Context) -> None:
    assert ctx.domains.spec == f"libvirt:{URI}"
    assert ctx.domains.incarnation(1) == TEST_DOMAIN
    assert ctx.domains.find("test") == Domain(1, TEST_DOMAIN.uuid, "test")
    assert ctx.domains.find(TEST_DOMAIN.uuid).domid == 1
    dom = KIT.create(ctx)
    assert ctx.domains.incarnation(dom.domid) == dom.incarnation
    assert dom in ctx.domains.domains()
    assert dom.incarnation in ctx.domains.incarnations()
    ctx.store(dom.domid, "xl", b"kept")
    assert ctx.retrieve(dom.domid, "xl") == b"kept"


def test_a_defined_but_inactive_domain_has_no_incarnation(ctx: domdata.Context) -> None:
    conn = KIT.conn
    uuid = str(_uuid.uuid4())
    dom = conn.defineXML(domain_xml("defined-only", uuid))
    try:
        for text in ("defined-only", uuid):
            with pytest.raises(domdata.DomainNotFound):
                ctx.domains.find(text)
        assert all(d.uuid != uuid for d in ctx.domains.domains())
        dom.create()
        assert ctx.domains.find("defined-only") == Domain(dom.ID(), uuid, "defined-only")
        ctx.store(dom.ID(), "xl", b"runs now")
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefine()


def test_a_domid_libvirt_cannot_hold_is_no_domain(ctx: domdata.Context) -> None:
    for domid in (2**31, 2**32 - 1, 999_999):
        with pytest.raises(domdata.DomainNotFound):
            ctx.store(domid, "xl", b"nobody")
        assert ctx.domains.incarnation(domid) is None


def test_a_node_file_domains_run_with_names(url: str, node: str) -> None:
    need_libvirt()
    with domdata.open(url, f"libvirt:{node}") as ctx:
        running = ctx.domains.domains()
        assert [d.name for d in running] == ["alpha", "beta", "gamma"]
        assert [d.domid for d in running] == sorted({d.domid for d in running})
        with pytest.raises(domdata.DomainNotFound):
            ctx.domains.find("idle")
        for dom in running:
            ctx.store(dom.domid, "xl", dom.name.encode() if dom.name else b"?")
        assert {ctx.retrieve(d.domid, "xl") for d in running} == {b"alpha", b"beta", b"gamma"}


def test_a_domid_reused_by_another_domain_sees_none_of_the_old_data(url: str, node: str) -> None:
    # Each open of a node file is a fresh hypervisor: the same IDs, new uuids.
    need_libvirt()
    with domdata.open(url, f"libvirt:{node}") as ctx:
        old = ctx.domains.find("alpha")
        ctx.store(old.domid, "xl", b"old domain")
    with domdata.open(url, f"libvirt:{node}") as ctx:
        new = ctx.domains.find("alpha")
        assert new.domid == old.domid
        assert new.uuid != old.uuid
        assert ctx.retrieve(new.domid, "xl") == b""
        assert ctx.list(new.domid) == []
        ctx.store(new.domid, "xl", b"new domain")
        report = ctx.reap()
        assert report.incarnations == [old.incarnation]
        assert ctx.retrieve(new.domid, "xl") == b"new domain"


def test_connection_failure_at_open_names_the_uri(url: str, tmp_path: Path) -> None:
    need_libvirt()
    uri = f"test+unix:///default?socket={tmp_path}/no-such-sock"
    with pytest.raises(domdata.SourceUnavailable, match="no-such-sock"):
        domdata.open(url, f"libvirt:{uri}")
    with pytest.raises(domdata.SourceUnavailable, match="nosuchdriver:///"):
        domdata.open(url, "libvirt:nosuchdriver:///")


def test_libvirt_going_away_is_source_unavailable_then_reconnects(url: str, libvirtd: Libvirtd) -> None:
    with domdata.open(url, f"libvirt:{libvirtd.uri}") as ctx:
        ctx.store(1, "xl", b"before")
        libvirtd.kill()
        with pytest.raises(domdata.SourceUnavailable, match="libvirt-sock"):
            ctx.store(1, "xl", b"while away")
        with pytest.raises(domdata.SourceUnavailable, match="libvirt-sock"):
            ctx.domains.domains()
        libvirtd.start()
        # The restarted daemon's domain 1 is the same built-in domain again.
        assert ctx.retrieve(1, "xl") == b"before"
        ctx.store(1, "xl", b"after")
        assert ctx.retrieve(1, "xl") == b"after"


def test_the_cli_reports_an_unreachable_libvirt_in_one_line(url: str, tmp_path: Path) -> None:
    need_libvirt()
    uri = f"test+unix:///default?socket={tmp_path}/no-such-sock"
    done = subprocess.run(
        [sys.executable, "-m", "domdata", "--store", url, "--domains", f"libvirt:{uri}", "list"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 10, done.stderr
    assert done.stderr.count("\n") == 1
    assert "no-such-sock" in done.stderr
    assert "Traceback" not in done.stderr


def test_neither_import_domdata_nor_the_cli_imports_libvirt() -> None:
    probe = textwrap.dedent("""
        import sys
        import domdata, domdata.cli, domdata.watch
        from click.testing import CliRunner
        assert CliRunner().invoke(domdata.cli.cli, ["--help"]).exit_code == 0
        print(sorted(m for m in sys.modules if m == "libvirt" or m.startswith("domdata.domains.libvirt")))
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.usefixtures("kits")
@pytest.mark.parametrize("store_name", sorted(STORE_KITS))
def test_every_store_keeps_data_of_libvirt_domains(store_name: str, tmp_path: Path) -> None:
    need_libvirt()
    store_url = STORE_KITS[store_name].url(tmp_path)
    with domdata.open(store_url, f"libvirt:{URI}") as ctx:
        dom, other = KIT.create(ctx), KIT.create(ctx)
        ctx.store(dom.domid, "xl", b"dom")
        ctx.store(other.domid, "xl", b"other")
        assert [i.userid for i in ctx.list(dom.domid)] == ["xl"]
        KIT.end(ctx, dom)
        with pytest.raises(domdata.DomainNotFound):
            ctx.retrieve(dom.domid, "xl")
        assert ctx.reap().incarnations == [dom.incarnation]
        assert ctx.retrieve(other.domid, "xl") == b"other"
        assert ctx.destroy(other.domid) == 1


@pytest.mark.parametrize(
    ("uri", "view"),
    [
        ("xen:///system", domdata.XenView.LIBVIRT),
        ("xen:///", domdata.XenView.LIBVIRT),
        ("xen+unix:///system", domdata.XenView.LIBVIRT),
        ("xen+ssh://other-host/system", domdata.XenView.NONE),
        ("qemu:///system", domdata.XenView.NONE),
        ("test:///default", domdata.XenView.NONE),
    ],
)
def test_only_the_local_xen_driver_sees_xen_domains(uri: str, view: domdata.XenView) -> None:
    need_libvirt()
    from domdata.domains.libvirt import xen_view_of

    assert xen_view_of(uri) is view
