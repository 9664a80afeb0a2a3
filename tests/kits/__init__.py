"""Test kits: how the conformance suite makes a fresh store and drives a domain source.

A store kit lives in ``tests/kits/store_<name>.py`` and a source kit in
``tests/kits/source_<name>.py``; each module exposes ``KIT``. The suite runs
every store with the managed source, every other source on SQLite, and xen
on libxl too.
Adding a backend means adding a file here, never editing the suite.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import domdata
from domdata import Domain, Incarnation


class StoreKit(ABC):
    """Makes fresh stores of one kind for tests."""

    name: str

    @abstractmethod
    def url(self, tmp_path: Path) -> str:
        """A URL naming a fresh, empty store for one test."""

    @abstractmethod
    def end_managed(self, url: str, incarnation: Incarnation) -> None:
        """Remove a managed domain's record behind domdata's back, leaving its items:
        what a crashed toolstack (or libxl destroying the domain itself) leaves."""

    def setup(self) -> None:
        """Once per test session, before the first url() (start a server...)."""

    def teardown(self) -> None:
        """Once per test session, after the last test."""


class SourceKit(ABC):
    """Drives one domain source: creates and ends real domains."""

    name: str
    #: False for sources where domdata cannot create domains (libvirt: the kit does).
    managed: bool

    @abstractmethod
    def spec(self, tmp_path: Path) -> str:
        """The ``domains=`` spec for one test."""

    @abstractmethod
    def create(self, ctx: domdata.Context) -> Domain:
        """Start a new live domain."""

    @abstractmethod
    def end(self, ctx: domdata.Context, domain: Domain) -> None:
        """End the domain's incarnation without telling domdata (its items stay)."""

    @abstractmethod
    def reincarnate(self, ctx: domdata.Context, domain: Domain) -> Domain:
        """End the domain's incarnation without telling domdata and start a new
        one with the same domid (or, where the source cannot, the same uuid)."""

    def setup(self) -> None:
        """Once per test session."""

    def teardown(self) -> None:
        """Once per test session."""


def _load(prefix: str) -> dict[str, object]:
    kits: dict[str, object] = {}
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name.startswith(prefix):
            kit = importlib.import_module(f"{__name__}.{module.name}").KIT
            kits[kit.name] = kit
    return kits


STORE_KITS: dict[str, StoreKit] = _load("store_")  # type: ignore[assignment]
SOURCE_KITS: dict[str, SourceKit] = _load("source_")  # type: ignore[assignment]


@dataclass
class Setup:
    """One store with one source, as a conformance test sees it."""

    store: StoreKit
    source: SourceKit
    url: str
    domains: str

    @property
    def id(self) -> str:
        return f"{self.store.name}+{self.source.name}"

    def open(self, **options: object) -> domdata.Context:
        return domdata.open(self.url, self.domains, **options)  # type: ignore[arg-type]

    @contextmanager
    def context(self, **options: object) -> Iterator[domdata.Context]:
        ctx = self.open(**options)
        try:
            yield ctx
        finally:
            ctx.close()

    def end(self, ctx: domdata.Context, domain: Domain) -> None:
        """End an incarnation behind domdata's back, leaving its items."""
        if self.source.managed:
            self.store.end_managed(self.url, domain.incarnation)
        else:
            self.source.end(ctx, domain)


def combinations() -> list[tuple[str, str]]:
    """Every store with ``managed``; every other source with ``sqlite``; and
    the libxl store with ``xen``, the authority on libxl's own directory."""
    pairs = [(store, "managed") for store in STORE_KITS]
    pairs += [("sqlite", source) for source in SOURCE_KITS if source != "managed"]
    pairs.append(("libxl", "xen"))
    return pairs
