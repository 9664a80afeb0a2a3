"""Fixtures of the libvirt tests: a SQLite store, a context on libvirt's
in-process test driver, and a private libvirtd for faults."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import domdata
from tests.kits.source_libvirt import URI, Libvirtd, need_libvirt


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'domdata.db'}"


@pytest.fixture
def ctx(url: str) -> Iterator[domdata.Context]:
    need_libvirt()
    with domdata.open(url, f"libvirt:{URI}") as context:
        yield context


@pytest.fixture
def libvirtd() -> Iterator[Libvirtd]:
    daemon = Libvirtd()
    daemon.start()
    yield daemon
    daemon.stop()
