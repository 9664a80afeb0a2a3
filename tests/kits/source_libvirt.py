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
import shutil
import signal
import subprocess
import tempfile
import time
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


class Libvirtd:
    """A private libvirtd with the test driver only, on a unix socket of its own.

    Its ``test:///default`` is one hypervisor shared by every client (other
    processes included), lost when the daemon dies and freed when the last
    client disconnects. Without libvirtd the test is skipped, except in CI.
    """

    def __init__(self) -> None:
        need_libvirt()
        binary = shutil.which("libvirtd") or "/usr/sbin/libvirtd"
        if not os.access(binary, os.X_OK):
            if os.environ.get("CI"):
                raise FileNotFoundError("libvirtd is not installed (Debian: libvirt-daemon)")
            pytest.skip("libvirtd is not installed (Debian: libvirt-daemon)")
        self._binary = binary
        # A unix socket path has at most 107 bytes: pytest's tmp_path can be longer.
        self.dir = Path(tempfile.mkdtemp(prefix="domdata-libvirtd-", dir="/tmp"))
        (self.dir / "drivers").mkdir()
        (self.dir / "libvirtd.conf").write_text(
            f'unix_sock_dir = "{self.dir}"\nunix_sock_rw_perms = "0700"\n'
            'auth_unix_rw = "none"\nauth_unix_ro = "none"\n'
        )
        self.uri = f"test+unix:///default?socket={self.dir}/libvirt-sock"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        """Start the daemon and wait until it answers."""
        # An empty driver directory keeps the hypervisor drivers (QEMU wants
        # its own user, LXC cgroups) out: the test driver is built in.
        env = {**os.environ, "LIBVIRT_DRIVER_DIR": str(self.dir / "drivers")}
        with open(self.dir / "log", "ab") as log:
            self._process = subprocess.Popen(
                [self._binary, "--config", str(self.dir / "libvirtd.conf"),
                 "--pid-file", str(self.dir / "pid")],
                env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                libvirt.open(self.uri).close()
                return
            except libvirt.libvirtError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"libvirtd did not start: {(self.dir / 'log').read_text()}") from None
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no event, no goodbye to the clients."""
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
            self._process = None
        shutil.rmtree(self.dir, ignore_errors=True)
