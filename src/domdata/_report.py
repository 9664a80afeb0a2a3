"""What ``reap`` reports (imported only by what reaps)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._types import Incarnation


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
