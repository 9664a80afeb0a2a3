"""``reap``: collect the data of every incarnation that no longer lives.

The store is read before the source: an incarnation with data that the
source no longer lists has ended and cannot come back. Each candidate's
death is then confirmed with the source on its own (a listing that misses
live domains, through access control or a truncated answer, never costs a
live domain its data). Each one is locked before its data goes (in batches,
so that open files stay bounded), so a write racing its death is collected
too. A store that other programs write (``SharedDirectory``) may refuse a
source that cannot see their domains, and has its debris swept.

For a source whose domains die with the host, a reboot ended every
incarnation that ran before it (DESIGN section 1): items written during an
earlier boot are collected even when the same ``(domid, uuid)`` runs again,
under its lock, and its items of this boot are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from ._errors import LeftBehind, LockTimeout, ReapRefused
from ._report import ReapReport
from ._types import Incarnation
from .domains import DomainSource
from .stores import SharedDirectory, Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .stores.base import HeldLock

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
    earlier = store.earlier_boot() if source.dies_with_host else ()
    stored = store.incarnations()
    living = source.incarnations()
    listed_dead = sorted(Incarnation._make(pair) for pair in stored - living)
    dead = [incarnation for incarnation in listed_dead if not source.lives(incarnation)]
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
    for start in range(0, len(dead), BATCH):
        batch = dead[start : start + BATCH]
        _reap_batch(_dropper(store), batch, store, held, timeout, report, report.incarnations)
    for start in range(0, len(rerun), BATCH):
        batch = rerun[start : start + BATCH]
        _reap_batch(store.drop_earlier_boot, batch, store, held, timeout, report, report.earlier_boot)
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


def _dropper(store: Store) -> Callable[[Collection[Incarnation]], int]:
    return lambda incarnations: store.drop(incarnations, "reap")


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
        try:
            report.items += drop(locked)
        except LeftBehind as exc:
            report.items += exc.removed
            report.failed.extend(exc.left)
            stuck = {incarnation for incarnation, _, _ in exc.left}
            locked = [incarnation for incarnation in locked if incarnation not in stuck]
        done.extend(locked)
    finally:
        for lock in locks:
            lock.release()
