"""Fixtures of the libxl tests: an existing directory laid out as /var/lib/xen
(domdata never creates one), and a context on it with managed domains."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import domdata


@pytest.fixture
def xen(tmp_path: Path) -> Path:
    made = tmp_path / "xen"
    made.mkdir()
    return made


@pytest.fixture
def ctx(xen: Path) -> Iterator[domdata.Context]:
    with domdata.open(f"libxl://{xen}") as context:
        yield context
