"""Fixtures of the PostgreSQL tests: a server of a test's own, to stop and restart."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kits.store_postgresql import KIT, Server


@pytest.fixture
def server(kits: None) -> Iterator[Server]:
    own = Server(KIT.binaries())
    try:
        yield own
    finally:
        own.remove()
