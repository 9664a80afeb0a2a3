"""``domdata watch``: the daemon that collects the data of incarnations as they end.

With a ``libvirt:<uri>`` source the daemon listens to libvirt's lifecycle
events and destroys the data of each incarnation that stops, crashes or is
undefined as soon as the event arrives; it reaps at start-up, after every
reconnection (domains that vanished while libvirt was away send no event)
and every *interval* seconds. With ``xen`` it lists libxl's domains every
``POLL`` seconds and collects each incarnation that left the list. With any
other source it only reaps periodically. libvirt is imported only when a
libvirt source is watched.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _context
from ._errors import Error, ReapRefused, SourceUnavailable
from ._types import Incarnation
from .domains import parse_source

if TYPE_CHECKING:
    from .domains.libvirt import LifecycleEvents

log = logging.getLogger("domdata.watch")

#: How often the daemon looks at ``stop`` while nothing happens.
_POLL = 0.25
#: Seconds between two listings of a source that has no events (xen).
POLL = 0.2
#: Reconnection backoff: first wait and ceiling, in seconds.
_RETRY_FIRST = 0.5
_RETRY_MAX = 30.0

_loop_lock = threading.Lock()
_loop_started = False


def watch(
    store: str | None,
    domains: str | None,
    *,
    interval: float = 60.0,
    stop: threading.Event | None = None,
    **options: Any,
) -> None:
    """Collect ended incarnations' data until *stop* is set.

    Opens ``domdata.open(store, domains, **options)`` (*domains* None: the
    source the store records, else managed); reaps at once and then
    every *interval* seconds; with a libvirt source, also on each lifecycle
    event that ends an incarnation, with ``xen`` on each death its polling
    of libxl's domain list sees. Once it runs, failures of the store or
    of libvirt are logged and retried; opening fails as ``domdata.open``
    does, and ReapRefused (the store does not belong to this source) is
    raised. Logs one INFO line per collected incarnation on the
    ``domdata.watch`` logger.
    """
    if not (math.isfinite(interval) and 0 < interval <= threading.TIMEOUT_MAX):
        # nan would pass a plain comparison and busy-loop; inf overflows every wait.
        raise ValueError(
            f"interval must be positive seconds, at most {threading.TIMEOUT_MAX:.0f}, not {interval}"
        )
    stop = threading.Event() if stop is None else stop
    if domains is None:
        # The recorded source, as named by the store; none recorded: managed, unnamed.
        domains = _context.recorded_source(store, host=options.get("host"))
    source = parse_source(domains or "managed")
    if source.kind == "libvirt":
        # libvirt wants its event implementation registered before the
        # process opens any connection.
        _start_event_loop()
    with _context.open(store, domains, **options) as ctx:
        if source.kind == "libvirt":
            _LibvirtWatcher(ctx, source.uri, interval, stop).run()
        elif source.kind == "xen":
            _poll_deaths(ctx, interval, stop)
        else:
            _reap_periodically(ctx, interval, stop)


def _start_event_loop() -> None:
    """libvirt's default event loop, once per process, in a daemon thread
    (it has no clean way to stop; it idles when no connection uses it)."""
    global _loop_started
    try:
        import libvirt
    except ImportError as exc:
        raise SourceUnavailable(
            f"watching libvirt needs an optional extra: pip install 'domdata[libvirt]' ({exc})"
        ) from exc

    with _loop_lock:
        if _loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                if libvirt.virEventRunDefaultImpl() < 0:
                    time.sleep(_POLL)  # never spin on a broken loop

        threading.Thread(target=run, name="domdata-libvirt-events", daemon=True).start()
        _loop_started = True


def _reap(ctx: _context.Context) -> bool:
    """Reap once, logging what went; False if the store or source failed."""
    try:
        report = ctx.reap()
    except ReapRefused:
        raise
    except Error as exc:
        log.warning("reap failed: %s", exc)
        return False
    for incarnation in report.incarnations:
        log.info("collected incarnation %s (reap)", incarnation)
    for incarnation in report.earlier_boot:
        log.info("collected the items incarnation %s had before this host's boot (reap)", incarnation)
    for incarnation in report.busy:
        log.warning("incarnation %s is dead but its lock is held: left for the next reap", incarnation)
    for leftover in report.leftovers:
        log.info("removed leftover %s", leftover)
    log.debug("reaped %d items of %d incarnations", report.items, len(report.incarnations))
    return True


def _reap_periodically(ctx: _context.Context, interval: float, stop: threading.Event) -> None:
    while not stop.is_set():
        _reap(ctx)
        stop.wait(interval)


def _poll_deaths(ctx: _context.Context, interval: float, stop: threading.Event) -> None:
    """Until *stop* is set: list the source's domains every POLL seconds and
    collect the data of each incarnation that left the list; reap at
    start-up (after the first listing, so nothing dies unseen in between) and
    every *interval* seconds. A failed listing is logged once and retried;
    the reap catches up with whatever died meanwhile."""
    known: set[Incarnation] | None = None  # None: not listed yet, or the listing failed
    failing = False
    next_reap = 0.0
    while not stop.is_set():
        try:
            live = ctx.domains.incarnations()
        except Error as exc:
            if not failing:
                log.warning("cannot list the domains of %s: %s", ctx.domains.spec, exc)
            failing, known = True, None
        else:
            if known is None:
                log.info("watching the domains of %s: %d running", ctx.domains.spec, len(live))
            for incarnation in sorted(known - live) if known is not None else ():
                _collect(ctx, incarnation, f"gone from {ctx.domains.spec}'s domain list")
            failing, known = False, live
        now = time.monotonic()
        if now >= next_reap:
            next_reap = now + (interval if _reap(ctx) else min(interval, _RETRY_MAX))
        stop.wait(POLL)


def _collect(ctx: _context.Context, incarnation: Incarnation, why: str) -> int | None:
    """Collect an incarnation that ended (under its lock, only if the source
    no longer has it); how many items went, None if it failed (logged)."""
    try:
        items = ctx.destroy(incarnation)
    except Error as exc:
        log.warning("cannot collect incarnation %s now (the next reap will): %s", incarnation, exc)
        return None
    if items:
        log.info("collected incarnation %s: %d item%s (%s)", incarnation, items, "s"[: items != 1], why)
    return items


class _News(NamedTuple):
    """A lifecycle event, handed from libvirt's loop to the watcher's thread."""

    uuid: str
    domid: int
    ended: bool


class _Lost(NamedTuple):
    """The event connection of this generation closed."""

    generation: int


class _LibvirtWatcher:
    """Owns the event connection; all state is touched by one thread only."""

    def __init__(self, ctx: _context.Context, uri: str, interval: float, stop: threading.Event) -> None:
        self._ctx = ctx
        self._uri = uri
        self._interval = interval
        self._stop = stop
        self._news: queue.SimpleQueue[_News | _Lost] = queue.SimpleQueue()
        self._events: LifecycleEvents | None = None
        self._generation = 0
        # STOPPED and UNDEFINED events of a persistent domain carry ID -1:
        # the domids each uuid started with are remembered here.
        self._domids: dict[str, set[int]] = {}

    def run(self) -> None:
        retry = _RETRY_FIRST
        next_reap = 0.0
        try:
            while not self._stop.is_set():
                if self._events is None:
                    if not self._connect(quiet=retry > _RETRY_FIRST):
                        self._stop.wait(retry)
                        retry = min(retry * 2, _RETRY_MAX)
                        continue
                    retry = _RETRY_FIRST
                    next_reap = 0.0
                now = time.monotonic()
                if now >= next_reap:
                    reaped = _reap(self._ctx)
                    next_reap = now + (self._interval if reaped else min(self._interval, _RETRY_MAX))
                    continue
                try:
                    news = self._news.get(timeout=min(next_reap - now, _POLL))
                except queue.Empty:
                    continue
                self._handle(news)
        finally:
            if self._events is not None:
                self._events.close()

    def _connect(self, *, quiet: bool) -> bool:
        """Listen anew, then remember who runs; the reap that follows catches
        whatever ended before listening started. *quiet* after the first of
        a run of failed attempts: one warning says libvirt is away."""
        from .domains.libvirt import LifecycleEvents

        self._generation += 1
        generation = self._generation
        try:
            self._events = LifecycleEvents(
                self._uri,
                lambda uuid, domid, ended: self._news.put(_News(uuid, domid, ended)),
                lambda: self._news.put(_Lost(generation)),
            )
        except Error as exc:
            log.log(logging.DEBUG if quiet else logging.WARNING, "%s: retrying", exc)
            return False
        try:
            live = self._ctx.domains.incarnations()
        except Error as exc:
            log.warning("cannot list libvirt domains: %s", exc)
            self._disconnect()
            return False
        self._domids = {}
        for domid, uuid in live:
            self._domids.setdefault(uuid, set()).add(domid)
        log.info("listening to libvirt %s: %d domains running", self._uri, len(live))
        return True

    def _disconnect(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None

    def _handle(self, news: _News | _Lost) -> None:
        if isinstance(news, _Lost):
            if news.generation == self._generation and self._events is not None:
                log.warning("lost libvirt %s: reconnecting", self._uri)
                self._disconnect()
            return
        if not news.ended:
            self._domids.setdefault(news.uuid, set()).add(news.domid)
            return
        domids = self._domids.pop(news.uuid, set())
        if news.domid >= 0:
            domids.add(news.domid)
        for domid in sorted(domids):
            self._collect(Incarnation(domid, news.uuid))

    def _collect(self, incarnation: Incarnation) -> None:
        ctx = self._ctx
        items = _collect(ctx, incarnation, "libvirt event")
        try:
            # Two incarnations share a uuid during a localhost migration: the
            # one still running must stay remembered.
            if items == 0 and ctx.domains.incarnation(incarnation.domid) == incarnation:
                self._domids.setdefault(incarnation.uuid, set()).add(incarnation.domid)
        except Error as exc:
            log.warning("cannot look up incarnation %s: %s", incarnation, exc)
