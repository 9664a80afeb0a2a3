"""Fixtures of the xen tests: the shim hypervisor (tests/kits/source_xen.py),
stores of both kinds, the command line and libxl's own userdata calls.

Every call above libxenctrl and libxenstore is Debian's real libxenlight: in
this process through the kit's RTLD_GLOBAL shim, in subprocesses through
LD_PRELOAD (the kit's docstring says why both work).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import domdata
from tests.kits.source_xen import KIT, Hypervisor

BIN = Path(sys.executable).parent
USERDATA = Path(__file__).parent / "libxl_userdata.py"

Shell = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture
def xen(kits: None) -> Iterator[Hypervisor]:
    """The shim's domains; those the test started are gone after it."""
    hypervisor = KIT.hypervisor
    before = hypervisor.domids()
    yield hypervisor
    for domid in hypervisor.domids() - before:
        hypervisor.destroy(domid)


@pytest.fixture(params=["sqlite", "libxl"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store of each kind; the libxl one is ``<tmp>/root/xen``, ready to be
    bind-mounted as /var/lib for libxl_userdata."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'domdata.db'}"
    (tmp_path / "root" / "xen").mkdir(parents=True)
    return f"libxl://{tmp_path / 'root' / 'xen'}"


@pytest.fixture
def ctx(xen: Hypervisor, url: str) -> Iterator[domdata.Context]:
    with domdata.open(url, "xen") as context:
        yield context


@pytest.fixture
def shell(xen: Hypervisor, url: str) -> Shell:
    """``domdata --store URL --domains xen ARGS...`` in a subprocess that
    preloads the shim."""

    def run(
        *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(BIN / "domdata"), "--store", url, "--domains", "xen", *args],
            input=stdin,
            capture_output=True,
            env=env or xen.env,
            timeout=60,
        )

    return run


def need_root(why: str) -> None:
    """Skip unless root (never in CI, which runs as root)."""
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip(f"{why} needs root (CI runs as root)")


def libxl_userdata(
    xen: Hypervisor, store_dir: Path, operation: str, domid: int, userid: str, data: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """libxl_userdata_store or _retrieve, run by Debian's libxenlight on the
    directory *store_dir* (named ``xen``), seen as /var/lib/xen in a private
    mount namespace."""
    need_root("bind-mounting a directory over /var/lib")
    assert store_dir.name == "xen"
    store_dir.mkdir(parents=True, exist_ok=True)
    script = 'mount --bind "$1" /var/lib && shift && exec "$@"'
    return subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            str(store_dir.parent),
            sys.executable,
            str(USERDATA),
            operation,
            str(domid),
            userid,
        ],
        input=data,
        capture_output=True,
        env=xen.env,
        timeout=60,
        check=False,
    )
