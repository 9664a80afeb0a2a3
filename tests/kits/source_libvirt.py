"""libvirt domains: libvirt's own test driver, ``test:///default``, in this process.

Every connection to ``test:///default`` in one process shares one hypervisor
while any of them is open (a ``test:///file.xml`` open would be a hypervisor
of its own, invisible to the context). The kit holds a connection for the
whole session, so domain IDs keep rising and are never reused between tests.

Without libvirt-python the libvirt tests are skipped, except in CI (``CI``
set), where that is an error.
"""

from __future__ import annotations

import os
import uuid as _uuid
from pathlib import Path
from typing import Any

import pytest

import domdata
from domdata import Domain

from . import SourceKit

try:
    import libvirt
except ImportError:
    if os.environ.get("CI"):
        raise
    libvirt = None

URI = "test:///default"
_XML = "<domain type='test'><name>{name}</name><uuid>{uuid}</uuid><memory>1024</memory>" \
    "<os><type>hvm</type></os></domain>"


def domain_xml(name: str, uuid: str | None = None) -> str:
    """The smallest domain the test driver runs."""
    return _XML.format(name=name, uuid=uuid or _uuid.uuid4())


def need_libvirt() -> Any:
    """The libvirt module, or skip the test (never in CI)."""
    if libvirt is None:
        pytest.skip("libvirt-python is not installed (pip install 'domdata[libvirt]')")
    return libvirt


class LibvirtKit(SourceKit):
    name = "libvirt"
    managed = False

    def __init__(self) -> None:
        self._conn: Any = None

    @property
    def conn(self) -> Any:
        """The kit's own read-write connection to ``test:///default``."""
        if self._conn is None:
            self._conn = need_libvirt().open(URI)
        return self._conn

    def spec(self, tmp_path: Path) -> str:
        need_libvirt()
        return f"libvirt:{URI}"

    def create(self, ctx: domdata.Context) -> Domain:
        dom = self.conn.createXML(domain_xml(f"kit-{_uuid.uuid4().hex[:12]}"), 0)
        return Domain(dom.ID(), dom.UUIDString(), dom.name())

    def end(self, ctx: domdata.Context, domain: Domain) -> None:
        self.conn.lookupByUUIDString(domain.uuid).destroy()

    def reincarnate(self, ctx: domdata.Context, domain: Domain) -> Domain:
        # The test driver never reuses an ID: start the same uuid again, as a
        # persistent domain's restart does.
        with_uuid = [d for d in self.conn.listAllDomains() if d.UUIDString() == domain.uuid]
        for dom in with_uuid:
            if dom.isActive():
                dom.destroy()
        dom = self.conn.createXML(domain_xml(domain.name or f"kit-{domain.domid}", domain.uuid), 0)
        return Domain(dom.ID(), dom.UUIDString(), dom.name())

    def teardown(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


KIT = LibvirtKit()
