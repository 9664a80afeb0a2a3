"""The conformance suite runs once per (store, source) combination, and each
clause twice: with single calls (a store's one-step fast path, where it has
one) and with each call inside ``ctx.lock()`` (the contract's general path)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any, cast

import pytest

import domdata
from domdata import Domain, Item
from tests.kits import SOURCE_KITS, STORE_KITS, Setup, combinations


@pytest.fixture(params=combinations(), ids=lambda pair: "+".join(pair))
def setup(request: pytest.FixtureRequest, tmp_path: Path, kits: None) -> Setup:
    store_name, source_name = request.param
    store, source = STORE_KITS[store_name], SOURCE_KITS[source_name]
    return Setup(store, source, store.url(tmp_path), source.spec(tmp_path))


class InsideLock:
    """A context whose item calls each run inside ``ctx.lock(domid)``.

    When the lock cannot be taken (no live domain, a malformed domid) the
    call runs without it, so that it fails the way the clause expects.
    """

    def __init__(self, ctx: domdata.Context) -> None:
        self._ctx = ctx

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def _locked(self, domid: object) -> ExitStack:
        held = ExitStack()
        with suppress(domdata.DomainNotFound, domdata.InvalidDomain):
            held.enter_context(self._ctx.lock(domid))  # type: ignore[arg-type]
        return held

    def store(self, domid: int, userid: str, data: bytes | bytearray | memoryview) -> None:
        with self._locked(domid):
            self._ctx.store(domid, userid, data)

    def retrieve(self, domid: int, userid: str) -> bytes:
        with self._locked(domid):
            return self._ctx.retrieve(domid, userid)

    def unlink(self, domid: int, userid: str) -> bool:
        with self._locked(domid):
            return self._ctx.unlink(domid, userid)

    def list(self, domid: int | None = None, *, all_hosts: bool = False) -> Sequence[Item]:
        if domid is None:
            return self._ctx.list(all_hosts=all_hosts)
        with self._locked(domid):
            return self._ctx.list(domid, all_hosts=all_hosts)


@pytest.fixture(params=["calls", "in-lock"])
def ctx(request: pytest.FixtureRequest, setup: Setup) -> Iterator[domdata.Context]:
    with setup.context() as context:
        yield context if request.param == "calls" else cast(domdata.Context, InsideLock(context))


@pytest.fixture
def dom(setup: Setup, ctx: domdata.Context) -> Domain:
    return setup.source.create(ctx)
