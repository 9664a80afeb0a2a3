"""Shared by the tests of the command line under hostile conditions
(tests/cli_hostile/): a store in a directory of its own, a domain
holding one item, a shell running domdata, what a directory gained."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests._faults import created_domain, domdata, environment

OUTPUT_FAILED, BROKEN_PIPE = 14, 141


def store_in(tmp_path: Path) -> str:
    """A SQLite store in a directory of its own: tmp_path holds only what a test writes there."""
    (tmp_path / "store").mkdir()
    return f"sqlite://{tmp_path / 'store' / 's.db'}"


def domain_with_item(store: str) -> str:
    """A managed domain ``web1`` holding the item ``k`` (``value``); its domid."""
    domid = str(created_domain(store))
    assert domdata(store, "store", domid, "k", stdin=b"value").returncode == 0
    return domid


def sh(store: str, script: str) -> subprocess.CompletedProcess[bytes]:
    """*script* run by sh, with domdata on PATH and DOMDATA_STORE set."""
    return subprocess.run(["sh", "-c", script], env=environment(store), capture_output=True, timeout=60)


def leftovers(directory: Path, *expected: str) -> list[str]:
    """What *directory* holds besides *expected*."""
    return sorted(p.name for p in directory.iterdir() if p.name not in expected)
