"""``reap``: collect the data of every incarnation that no longer lives.

The store is read before the source: an incarnation with data that the
source no longer lists has ended and cannot come back. Each one is locked
before its data goes (in batches, so that open files stay bounded), so a
write racing its death is collected too. A store that other programs write
(``SharedDirectory``) may refuse a source that cannot see their domains,
and has its debris swept.

For a source whose domains die with the host, a reboot ended every
incarnation that ran before it (DESIGN section 1): items written during an
earlier boot are collected even when the same ``(domid, uuid)`` runs again,
under its lock, and its items of this boot are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from ._errors import LockTimeout
from ._types import Incarnation
from .domains import DomainSource
from .stores import HeldLock, SharedDirectory, Store

#: Reap locks and drops dead incarnations this many at a time (bounded open files).
BATCH = 256


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
    dry_run: bool = False


def reap(
    store: Store,
    source: DomainSource,
    held: Collection[int],
    timeout: float,
    *,
    dry_run: bool = False,
    force: bool = False,
) -> ReapReport:
    """Reap *store* with the living of *source*; *held* are the domids whose
    lock the caller holds already, *timeout* how long to wait for the others."""
    shared = store if isinstance(store, SharedDirectory) else None
    if shared is not None and not force and not dry_run:
        shared.check_reap(source.xen_view)
    earlier = store.earlier_boot() if source.dies_with_host else ()
    stored = store.incarnations()
    living = source.incarnations()
    dead = sorted(Incarnation._make(pair) for pair in stored - living)
    # Incarnations that run again after a reboot, with items of the boot before.
    rerun = sorted({Incarnation(i.domid, i.uuid) for i in earlier} & living)
    report = ReapReport(dry_run=dry_run)
    if dry_run:
        report.incarnations = dead
        report.earlier_boot = rerun
        doomed = set(dead)
        report.items = sum(1 for item in store.items(None) if (item.domid, item.uuid) in doomed)
        report.items += sum(1 for item in earlier if (item.domid, item.uuid) in living)
        report.leftovers = [] if shared is None else shared.sweep(dry_run=True)
        return report
    jobs = ((store.drop, dead, report.incarnations), (store.drop_earlier_boot, rerun, report.earlier_boot))
    for drop, ended, done in jobs:
        for start in range(0, len(ended), BATCH):
            _reap_batch(drop, ended[start : start + BATCH], store, held, timeout, report, done)
    report.leftovers = [] if shared is None else shared.sweep(dry_run=False)
    return report


def reap_earlier_boots(store: Store, timeout: float, *, dry_run: bool = False) -> ReapReport:
    """Collect every item of an earlier boot than the one *store* follows:
    they belong to ended incarnations, so no source is asked. Each
    incarnation is locked first, and its items of this boot are kept. A
    store that other programs write has its debris swept too."""
    shared = store if isinstance(store, SharedDirectory) else None
    earlier = store.earlier_boot()
    ended = sorted({Incarnation(item.domid, item.uuid) for item in earlier})
    report = ReapReport(dry_run=dry_run)
    if dry_run:
        report.earlier_boot = ended
        report.items = len(earlier)
    else:
        for start in range(0, len(ended), BATCH):
            batch = ended[start : start + BATCH]
            _reap_batch(store.drop_earlier_boot, batch, store, (), timeout, report, report.earlier_boot)
    report.leftovers = [] if shared is None else shared.sweep(dry_run=dry_run)
    return report


def _reap_batch(
    drop: Callable[[Collection[Incarnation]], int],
    batch: Sequence[Incarnation],
    store: Store,
    held: Collection[int],
    timeout: float,
    report: ReapReport,
    done: list[Incarnation],
) -> None:
    """Lock each incarnation of *batch*, then *drop* the locked ones' items."""
    locks: list[HeldLock] = []
    locked: list[Incarnation] = []
    try:
        for incarnation in batch:
            if incarnation.domid not in held:
                try:
                    locks.append(store.lock(incarnation.domid, incarnation.uuid, timeout))
                except LockTimeout:
                    report.busy.append(incarnation)
                    continue
            locked.append(incarnation)
        report.items += drop(locked)
        done.extend(locked)
    finally:
        for lock in locks:
            lock.release()
