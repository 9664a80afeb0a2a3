"""Fixtures every test folder shares: the kits' session set-up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kits import SOURCE_KITS, STORE_KITS, SourceKit, StoreKit


@pytest.fixture(scope="session")
def kits() -> Iterator[None]:
    """Start whatever the kits need (servers, daemons) once, stop it at the end."""
    started: list[StoreKit | SourceKit] = []
    try:
        every: list[StoreKit | SourceKit] = [*STORE_KITS.values(), *SOURCE_KITS.values()]
        for kit in every:
            kit.setup()
            started.append(kit)
        yield
    finally:
        for kit in reversed(started):
            kit.teardown()
