"""What ``reap`` and ``info`` report (imported only by what runs them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from ._types import Incarnation


class StoreInfo(NamedTuple):
    """Which store and source a context uses (``Context.info()``, ``domdata info``)."""

    #: The store's URL (without any password).
    store: str
    #: The database file, the directory, or the server and database.
    location: str
    #: The store's schema version; None for libxl's layout, which has none.
    schema_version: int | None
    #: The domain source in use.
    source: str
    #: The source the store records as governing it (DESIGN section 3).
    bound_source: str | None
    #: Cluster stores: the host this context speaks for; None elsewhere.
    host: str | None


@dataclass(slots=True)
class ReapReport:
    """What ``reap`` removed (or, with ``dry_run``, would remove)."""

    incarnations: list[Incarnation] = field(default_factory=list)
    #: Incarnations whose items of an earlier boot of the host went, though
    #: they run again (or, reaping at boot, whatever their state).
    earlier_boot: list[Incarnation] = field(default_factory=list)
    items: int = 0
    leftovers: list[str] = field(default_factory=list)
    busy: list[Incarnation] = field(default_factory=list)
    #: What could not be removed, after everything else was: ``LeftBehind.left``.
    failed: list[tuple[object, str, str]] = field(default_factory=list)
    dry_run: bool = False
