"""The ``xen`` domain source: Debian's libxenlight over the shim hypervisor.

These tests call libxenlight in the test process, where LD_PRELOAD cannot
apply (the process already runs): the kit loads the shim with RTLD_GLOBAL
before anything loads libxenlight, so the real libxenlight binds its
libxenctrl and libxenstore calls to the shim, and checks that it does (its
first context must list a domain only the shim knows). The command-line
tests (test_cli.py, test_watch.py) use LD_PRELOAD.
"""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import pytest

import domdata
from domdata import Domain
from domdata.domains._xenlight import DomInfo
from tests.kits.source_xen import DOM0, ENV, Hypervisor


def test_a_running_domain_is_libxls_domid_and_lower_case_uuid(xen: Hypervisor, ctx: domdata.Context) -> None:
    dom = xen.start("web", uuid="6695EB01-F6A4-8304-79AA-97F2502E193F")
    expected = Domain(dom.domid, "6695eb01-f6a4-8304-79aa-97f2502e193f", "web")
    assert ctx.domains.spec == "xen"
    assert ctx.domains.incarnation(dom.domid) == expected.incarnation
    assert ctx.domains.find(str(dom.domid)) == expected
    assert ctx.domains.find("web") == expected
    assert ctx.domains.find(expected.uuid) == expected
    listed = ctx.domains.domains()
    assert DOM0 in listed
    assert expected in listed
    assert [d.domid for d in listed] == sorted(d.domid for d in listed)
    assert ctx.domains.incarnations() == {d.incarnation for d in listed}
    ctx.store(dom.domid, "xl", b"kept")
    assert ctx.retrieve(dom.domid, "xl") == b"kept"
    assert [(i.domid, i.uuid, i.userid) for i in ctx.list(dom.domid)] == [(dom.domid, expected.uuid, "xl")]


def test_the_source_dies_with_the_host(ctx: domdata.Context) -> None:
    assert getattr(ctx.domains, "dies_with_host", False) is True


def test_a_destroyed_domain_is_not_found_and_its_data_is_reaped(
    xen: Hypervisor, ctx: domdata.Context
) -> None:
    dom, survivor = xen.start(), xen.start()
    ctx.store(dom.domid, "xl", b"doomed")
    ctx.store(survivor.domid, "xl", b"kept")
    xen.destroy(dom.domid)
    for call in (lambda: ctx.retrieve(dom.domid, "xl"), lambda: ctx.store(dom.domid, "xl", b"late")):
        with pytest.raises(domdata.DomainNotFound):
            call()
    with pytest.raises(domdata.DomainNotFound):
        ctx.domains.find(dom.name or "")
    assert ctx.domains.by_uuid(dom.uuid) == []
    report = ctx.reap()
    assert report.incarnations == [dom.incarnation]
    assert all(i.domid != dom.domid for i in ctx.list())
    assert ctx.retrieve(survivor.domid, "xl") == b"kept"


def test_a_domid_reused_with_a_new_uuid_sees_nothing_of_the_old(
    xen: Hypervisor, ctx: domdata.Context
) -> None:
    old = xen.start("db")
    ctx.store(old.domid, "xl", b"old")
    xen.destroy(old.domid)
    new = xen.start("db", domid=old.domid)
    assert new.uuid != old.uuid
    assert ctx.domains.incarnation(new.domid) == new.incarnation
    assert ctx.retrieve(new.domid, "xl") == b""
    assert ctx.list(new.domid) == []
    ctx.store(new.domid, "xl", b"new")
    assert ctx.destroy(old.incarnation) == 1  # the ended incarnation's data only
    assert ctx.retrieve(new.domid, "xl") == b"new"
    assert ctx.reap().incarnations == []


def test_a_reserved_or_impossible_domid_is_no_domain(xen: Hypervisor, ctx: domdata.Context) -> None:
    dom = xen.start()
    # DOMID_SELF (0x7FF0): libxl 4.18 would answer it with the caller's own
    # domain; dom.domid + 0x10000: Xen keeps 16 bits and would find dom.
    for domid in (0x7FF0, 0x7FF2, 0xFFFF, dom.domid + 0x10000, 2**32 - 1):
        assert ctx.domains.incarnation(domid) is None
        with pytest.raises(domdata.DomainNotFound):
            ctx.store(domid, "xl", b"nobody")
    assert ctx.domains.incarnation(dom.domid) == dom.incarnation


def test_no_hypervisor_at_open_or_later_is_source_unavailable(
    xen: Hypervisor, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with domdata.open(url, "xen") as ctx:
        monkeypatch.setenv(ENV, str(tmp_path / "gone"))
        with pytest.raises(
            domdata.SourceUnavailable, match=r"^xen: cannot list domains: .*No such file"
        ) as listing:
            ctx.domains.domains()
        assert "\n" not in str(listing.value)
        with pytest.raises(domdata.SourceUnavailable):
            ctx.reap()
        with pytest.raises(
            domdata.SourceUnavailable,
            match=r"^xen: libxenlight cannot reach the hypervisor: .*cannot open libxc handle",
        ) as opening:
            domdata.open(url, "xen")
        assert "\n" not in str(opening.value)
        monkeypatch.setenv(ENV, str(xen.path))
        assert DOM0 in ctx.domains.domains()


@pytest.mark.usefixtures("xen")  # gcc and libxen-dev, or skip
def test_the_dominfo_layout_is_libxls(tmp_path: Path) -> None:
    """domdata's ctypes structure against the C compiler's view of libxl.h."""
    program = tmp_path / "layout.c"
    program.write_text(
        "#include <stddef.h>\n#include <stdio.h>\n#include <libxl.h>\n"
        'int main(void) { printf("%zu %zu %zu %zu %zu\\n", sizeof(libxl_dominfo),'
        " offsetof(libxl_dominfo, uuid), offsetof(libxl_dominfo, domid),"
        " offsetof(libxl_dominfo, ssid_label), offsetof(libxl_dominfo, domain_type)); return 0; }\n"
    )
    subprocess.run(["gcc", "-o", str(tmp_path / "layout"), str(program)], check=True)
    printed = subprocess.run(
        [str(tmp_path / "layout")], capture_output=True, text=True, check=True
    ).stdout.split()
    ours = [ctypes.sizeof(DomInfo)] + [
        getattr(DomInfo, f).offset for f in ("uuid", "domid", "ssid_label", "domain_type")
    ]
    assert [int(n) for n in printed] == ours


def test_a_localhost_migration_keeps_the_two_incarnations_apart(
    xen: Hypervisor, ctx: domdata.Context
) -> None:
    source = xen.start("migrating")
    target = xen.start("migrating--incoming", uuid=source.uuid)
    ctx.store(source.domid, "xl", b"source side")
    ctx.store(target.domid, "xl", b"target side")
    with pytest.raises(domdata.DomainNotFound, match="several domains"):
        ctx.domains.find(source.uuid)
    assert {d.domid for d in ctx.domains.by_uuid(source.uuid)} == {source.domid, target.domid}
    xen.destroy(source.domid)
    assert ctx.reap().incarnations == [source.incarnation]
    assert ctx.retrieve(target.domid, "xl") == b"target side"


def test_a_closed_source_refuses_calls(xen: Hypervisor, url: str) -> None:
    ctx = domdata.open(url, "xen")
    source = ctx.domains
    ctx.close()
    source.close()  # twice is harmless
    with pytest.raises(domdata.StoreUnavailable, match="this context is closed"):
        source.domains()
