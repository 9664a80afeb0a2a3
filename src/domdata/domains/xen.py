"""``xen``: the domains of the local Xen hypervisor, through libxenlight.

The authority on a host where ``xl`` starts domains without libvirt. A domain
exists while ``libxl_domain_info`` finds it, the rule libxl applies after
taking a domain's userdata lock; its uuid is libxl's, in lower case. The
library is loaded with ctypes when the source is opened (see
``_xenlight``), so ``import domdata`` never loads it.

``domdata watch`` with this source lists libxl's domains every ``POLL``
seconds and collects the data of each incarnation that left the list (Xen
has no event a process other than the toolstack can count on).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .._errors import Error
from .._types import Domain, Incarnation
from ._xenlight import Libxl
from .base import DomainSource

if TYPE_CHECKING:
    import threading

    from .._context import Context

log = logging.getLogger("domdata.watch")

#: Seconds between two listings of libxl's domains in ``domdata watch``.
POLL = 0.2
#: Seconds before a reap that failed is tried again, at most.
_REAP_RETRY = 30.0


class XenDomains(DomainSource):
    """The live domains of this host's Xen, as libxl sees them.

    SourceUnavailable (one line) when libxenlight is not installed or cannot
    reach the hypervisor, at opening or on any later call.
    """

    spec = "xen"
    #: A host's reboot ends every Xen domain on it (DESIGN section 1).
    dies_with_host = True

    def __init__(self) -> None:
        self._libxl = Libxl()

    def _named(self, incarnation: Incarnation) -> Domain:
        return Domain(incarnation.domid, incarnation.uuid, self._libxl.name(incarnation.domid))

    def incarnation(self, domid: int) -> Incarnation | None:
        return self._libxl.incarnation(domid)

    def domains(self) -> Sequence[Domain]:
        return [self._named(incarnation) for incarnation in self._libxl.incarnations()]

    def incarnations(self) -> set[Incarnation]:
        # Without names: one call, however many domains run.
        return set(self._libxl.incarnations())

    def by_domid(self, domid: int) -> Domain | None:
        incarnation = self._libxl.incarnation(domid)
        return None if incarnation is None else self._named(incarnation)

    def by_uuid(self, uuid: str) -> Sequence[Domain]:
        return [self._named(i) for i in self._libxl.incarnations() if i.uuid == uuid]

    def close(self) -> None:
        self._libxl.close()


def watch_deaths(
    ctx: Context, interval: float, stop: threading.Event, *, reap: Callable[[Context], bool]
) -> None:
    """Until *stop* is set: list libxl's domains every POLL seconds and collect
    the data of each incarnation that left the list; *reap* at start-up (after
    the first listing, so nothing dies unseen in between) and every
    *interval* seconds. A failed listing is logged once and retried; the reap
    catches up with whatever died meanwhile."""
    known: set[Incarnation] | None = None  # None: not listed yet, or the listing failed
    failing = False
    next_reap = 0.0
    while not stop.is_set():
        try:
            live = ctx.domains.incarnations()
        except Error as exc:
            if not failing:
                log.warning("cannot list Xen domains: %s", exc)
            failing, known = True, None
        else:
            if known is None:
                log.info("watching Xen domains through libxenlight: %d running", len(live))
            for incarnation in sorted(known - live) if known is not None else ():
                _collect(ctx, incarnation)
            failing, known = False, live
        now = time.monotonic()
        if now >= next_reap:
            next_reap = now + (interval if reap(ctx) else min(interval, _REAP_RETRY))
        stop.wait(POLL)


def _collect(ctx: Context, incarnation: Incarnation) -> None:
    try:
        # Under the incarnation's lock, and only if libxl no longer finds it.
        items = ctx.destroy(incarnation)
    except Error as exc:
        log.warning("cannot collect incarnation %s now (the next reap will): %s", incarnation, exc)
        return
    if items:
        log.info("collected incarnation %s: %d items (gone from libxl's domain list)", incarnation, items)
