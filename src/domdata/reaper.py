"""``reap``: collect the data of every incarnation that no longer lives.

The store is read before the source: an incarnation with data that the
source no longer lists has ended and cannot come back. Each candidate's
death is then confirmed with the source on its own (a listing that misses
live domains, through access control or a truncated answer, never costs a
live domain its data). Each one is locked before its data goes (in batches,
so that open files stay bounded), so a write racing its death is collected
too. A store that other programs write (``SharedDirectory``) may refuse a
source that cannot see their domains, and has its debris swept.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ._errors import LeftBehind, LockTimeout, ReapRefused
from ._types import Incarnation, ReapReport
from .domains import DomainSource
from .stores import HeldLock, SharedDirectory, Store

#: Reap locks and drops dead incarnations this many at a time (bounded open files).
BATCH = 256


def reap(
    store: Store,
    source: DomainSource,
    held: Collection[int],
    timeout: float,
    *,
    dry_run: bool = False,
    force: bool = False,
    governed: bool = True,
) -> ReapReport:
    """Reap *store* with the living of *source*; *held* are the domids whose
    lock the caller holds already, *timeout* how long to wait for the others.
    Not *governed*: the store records no source for the data it holds."""
    shared = store if isinstance(store, SharedDirectory) else None
    if not force and not dry_run:
        if shared is not None:
            shared.check_reap(source.xen_view)
        if not governed:
            raise ReapRefused(
                "the store holds data but records no domain source: name the one that governs it"
                " (--domains, or domdata bind) so that reap asks the right authority",
                store=store.url,
            )
    stored = store.incarnations()
    listed_dead = sorted(Incarnation._make(pair) for pair in stored - source.incarnations())
    dead = [incarnation for incarnation in listed_dead if not source.lives(incarnation)]
    report = ReapReport(dry_run=dry_run)
    if dry_run:
        report.incarnations = dead
        doomed = set(dead)
        report.items = sum(1 for item in store.items(None) if (item.domid, item.uuid) in doomed)
        report.leftovers = [] if shared is None else shared.sweep(dry_run=True)
        return report
    for start in range(0, len(dead), BATCH):
        _reap_batch(store, dead[start : start + BATCH], held, timeout, report)
    report.leftovers = [] if shared is None else shared.sweep(dry_run=False)
    return report


def _reap_batch(
    store: Store, batch: Sequence[Incarnation], held: Collection[int], timeout: float, report: ReapReport
) -> None:
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
        try:
            report.items += store.drop(locked, "reap")
        except LeftBehind as exc:
            report.items += exc.removed
            report.failed.extend(exc.left)
            stuck = {incarnation for incarnation, _, _ in exc.left}
            locked = [incarnation for incarnation in locked if incarnation not in stuck]
        report.incarnations.extend(locked)
    finally:
        for lock in locks:
            lock.release()
