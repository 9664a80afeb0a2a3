"""Xen domains: Debian's real libxenlight over a hypervisor made of a text file.

This machine runs no Xen. ``tests/xen/shim.c``, built with gcc once per
session, answers the libxenctrl and libxenstore calls libxl makes below
``libxl_ctx_alloc``, ``libxl_domain_info``, ``libxl_list_domain`` and
``libxl_domid_to_name`` from a file of ``domid uuid name`` lines (see the
shim's header); every libxl function is Debian's. The kit creates and ends
domains by rewriting that file.

Subprocesses get the shim with LD_PRELOAD (``Hypervisor.env``). This process
loads it with ``RTLD_GLOBAL`` before anything loads libxenlight: the real
libxenlight, loaded later with ``dlopen``, then binds its libxenctrl and
libxenstore symbols to the shim, which comes first in the global scope. That
is checked, not assumed: the kit's first context must list a domain that
only the shim knows (a machine without Xen has no domain at all).

Without gcc, the Xen headers (libxen-dev) or libxenlight the xen tests are
skipped, except in CI (``CI`` set), where that is an error.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import tempfile
import uuid as _uuid
from pathlib import Path

import pytest

import domdata
from domdata import Domain
from domdata.domains._xenlight import SONAMES

from . import SourceKit

#: The shim's variable: the path of its domain file.
ENV = "DOMDATA_XEN_SHIM_DOMAINS"
SHIM_SOURCE = Path(__file__).parent.parent / "xen" / "shim.c"
_CFLAGS = ("-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror")
#: What the shim's file says about a domain that is no Xen guest (Xen's own dom0).
DOM0 = Domain(0, "00000000-0000-0000-0000-000000000000", "Domain-0")


def _libxenlight_installed() -> bool:
    # Asks ldconfig without loading it: loaded before the shim, it would bind to the real libxenctrl.
    return ctypes.util.find_library("xenlight") in SONAMES


class Hypervisor:
    """The shim's domain file: what is running, as the tests say."""

    def __init__(self, directory: Path, shim: Path) -> None:
        self.shim = shim
        self.path = directory / "domains"
        self._next_domid = 1
        self._running: dict[int, Domain] = {}
        self._write()

    def _write(self) -> None:
        lines = [f"{d.domid} {d.uuid} {d.name}\n" for d in (DOM0, *self._running.values())]
        temporary = self.path.with_suffix(".new")
        temporary.write_text("".join(lines))
        temporary.rename(self.path)  # the shim reads it at any moment

    @property
    def env(self) -> dict[str, str]:
        """The environment of a subprocess that sees this hypervisor through libxenlight."""
        return {**os.environ, ENV: str(self.path), "LD_PRELOAD": str(self.shim)}

    def start(self, name: str | None = None, *, domid: int | None = None, uuid: str | None = None) -> Domain:
        """Run a new domain (the next free domid unless given; a fresh uuid unless given)."""
        if domid is None:
            domid = self._next_domid
            self._next_domid += 1
        if domid in self._running:
            raise ValueError(f"domain {domid} runs already")
        dom = Domain(domid, uuid or str(_uuid.uuid4()), name or f"xen-{_uuid.uuid4().hex[:12]}")
        self._running[domid] = dom
        self._write()
        return dom

    def __contains__(self, domid: int) -> bool:
        return domid in self._running

    def domids(self) -> set[int]:
        """The domids of the running guests (dom0 always runs)."""
        return set(self._running)

    def destroy(self, domid: int) -> None:
        """The domain is gone from Xen (no domdata call)."""
        del self._running[domid]
        self._write()


class XenKit(SourceKit):
    name = "xen"
    managed = False

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._hypervisor: Hypervisor | None = None
        self._why_not: str | None = None

    def setup(self) -> None:
        if self._hypervisor is None and self._why_not is None:
            self._start()

    def _start(self) -> None:
        gcc = shutil.which("gcc")
        if gcc is None or not _libxenlight_installed() or not Path("/usr/include/xenctrl.h").exists():
            self._why_not = "gcc, libxenlight and the Xen headers are needed (Debian: gcc libxen-dev)"
            if os.environ.get("CI"):
                raise RuntimeError(f"the xen tests cannot run in CI: {self._why_not}")
            return
        self._dir = Path(tempfile.mkdtemp(prefix="domdata-xen-"))
        shim = self._dir / "shim.so"
        subprocess.run([gcc, *_CFLAGS, "-o", str(shim), str(SHIM_SOURCE)], check=True)
        hypervisor = Hypervisor(self._dir, shim)
        os.environ[ENV] = str(hypervisor.path)
        ctypes.CDLL(str(shim), mode=os.RTLD_NOW | os.RTLD_GLOBAL)
        self._hypervisor = hypervisor
        probe = hypervisor.start("probe")
        from domdata.domains.xen import XenDomains

        source = XenDomains()
        try:
            seen = source.incarnations()
        finally:
            source.close()
        hypervisor.destroy(probe.domid)
        if seen != {DOM0.incarnation, probe.incarnation}:
            raise RuntimeError(f"libxenlight does not see the shim's domains (it lists {seen})")

    def need(self) -> Hypervisor:
        """The shim's domains; skips the test where the shim cannot run (never in CI)."""
        self.setup()
        if self._hypervisor is None:
            pytest.skip(self._why_not or "the xen kit is not set up")
        return self._hypervisor

    @property
    def hypervisor(self) -> Hypervisor:
        return self.need()

    def spec(self, tmp_path: Path) -> str:
        self.need()
        return "xen"

    def create(self, ctx: domdata.Context) -> Domain:
        return self.hypervisor.start()

    def end(self, ctx: domdata.Context, domain: Domain) -> None:
        self.hypervisor.destroy(domain.domid)

    def reincarnate(self, ctx: domdata.Context, domain: Domain) -> Domain:
        # Xen reuses domids: the same domid, a new uuid (a recreated domain).
        hypervisor = self.hypervisor
        if domain.domid in hypervisor:
            hypervisor.destroy(domain.domid)
        return hypervisor.start(domain.name, domid=domain.domid)

    def teardown(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


KIT = XenKit()
