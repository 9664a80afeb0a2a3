"""The conformance suite runs once per (store, source) combination."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import domdata
from domdata import Domain
from tests.kits import SOURCE_KITS, STORE_KITS, Setup, combinations


@pytest.fixture(params=combinations(), ids=lambda pair: "+".join(pair))
def setup(request: pytest.FixtureRequest, tmp_path: Path, kits: None) -> Setup:
    store_name, source_name = request.param
    store, source = STORE_KITS[store_name], SOURCE_KITS[source_name]
    return Setup(store, source, store.url(tmp_path), source.spec(tmp_path))


@pytest.fixture
def ctx(setup: Setup) -> Iterator[domdata.Context]:
    with setup.context() as context:
        yield context


@pytest.fixture
def dom(setup: Setup, ctx: domdata.Context) -> Domain:
    return setup.source.create(ctx)
