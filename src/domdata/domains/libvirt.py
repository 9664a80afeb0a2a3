"""``libvirt:<uri>``: domains of any libvirt connection (``qemu:///system``,
``xen:///system``, ``lxc:///``, ``test:///default``).

A running domain's ``ID()`` is its domid and ``UUIDString()`` its uuid; a
defined but inactive domain has no incarnation. Imported only when a
``libvirt:`` source is opened, so ``import domdata`` never loads libvirt.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import libvirt

from .._errors import SourceUnavailable
from .._types import Domain, Incarnation
from .._xen_view import XenView
from . import on_this_host
from .base import Closed, DomainSource

T = TypeVar("T")

#: libvirt's IDs are C ints: a domid above this can name no libvirt domain.
_MAX_LIBVIRT_ID = 2**31 - 1
# Lifecycle events after which the incarnation may have ended. CRASHED is
# included because a domain that crashed with on_crash=destroy is gone; one
# kept for a dump still has its ID, and collecting it is then refused.
_ENDING_EVENTS = frozenset({
    libvirt.VIR_DOMAIN_EVENT_STOPPED,
    libvirt.VIR_DOMAIN_EVENT_CRASHED,
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED,
})


def _quiet(_opaque: object, _error: object) -> None:
    """libvirt prints every error on stderr unless a handler is set; domdata
    turns the ones that matter into exceptions, and "Domain not found" is an
    answer, not an error."""


libvirt.registerErrorHandler(_quiet, None)


def _no_domain(exc: libvirt.libvirtError) -> bool:
    return bool(exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN)


def xen_view_of(uri: str) -> XenView:
    """libvirt's Xen driver on this host sees the domains it created itself."""
    local_xen = urlsplit(uri).scheme in ("xen", "xen+unix") and on_this_host(uri)
    return XenView.LIBVIRT if local_xen else XenView.NONE


def _active(dom: Any) -> Domain | None:
    domid = dom.ID()
    return None if domid < 0 else Domain(domid, dom.UUIDString(), dom.name())


def open_connection(uri: str) -> Any:
    """A read-only libvirt connection to *uri*, or SourceUnavailable naming it.

    domdata only looks domains up and listens to events: read-only is
    enough, and libvirtd lets any local user open one (``qemu:///system``).
    """
    try:
        return libvirt.openReadOnly(uri)
    except libvirt.libvirtError as exc:
        raise SourceUnavailable(f"cannot connect to libvirt {uri}: {exc}") from exc


class LibvirtDomains(DomainSource):
    """The live domains of one libvirt connection.

    The connection is reopened by the first call after it broke (libvirtd
    restarted), once per call; if libvirt is still away, SourceUnavailable.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._reopen = threading.Lock()
        self._conn: Any = open_connection(uri)
        # libvirt's own spelling of the connection: how a store records its source.
        self.spec = f"libvirt:{self._canonical_uri()}"
        self._xen_view = xen_view_of(uri)
        self.dies_with_host = on_this_host(uri)
        # The uuid each domid had when last seen: a hint, never an answer.
        self._uuids: dict[int, str] = {}

    @property
    def xen_view(self) -> XenView:
        """The local Xen driver sees the domains it created (``xen_view_of``)."""
        return self._xen_view

    def _call(self, call: Callable[[Any], T]) -> T:
        conn = self._conn
        try:
            return call(conn)
        except libvirt.libvirtError as exc:
            if self._alive(conn):
                raise SourceUnavailable(f"libvirt {self.uri}: {exc}") from exc
        conn = self._reconnect(conn)
        try:
            return call(conn)
        except libvirt.libvirtError as exc:
            raise SourceUnavailable(f"libvirt {self.uri}: {exc}") from exc

    def _canonical_uri(self) -> str:
        try:
            return str(self._conn.getURI())
        except libvirt.libvirtError as exc:
            self._conn.close()
            raise SourceUnavailable(f"libvirt {self.uri}: {exc}") from exc

    @staticmethod
    def _alive(conn: Any) -> bool:
        try:
            return bool(conn.isAlive())
        except libvirt.libvirtError:
            return False

    def _reconnect(self, broken: Any) -> Any:
        with self._reopen:
            # Another thread may have reopened it while this one waited.
            if self._conn is broken:
                fresh = open_connection(self.uri)
                self._conn = fresh
                with contextlib.suppress(libvirt.libvirtError):
                    broken.close()
            return self._conn

    def _lookup(self, call: Callable[[Any], Any]) -> Any:
        """The domain *call* looks up, or None for VIR_ERR_NO_DOMAIN."""

        def lookup(conn: Any) -> Any:
            try:
                return call(conn)
            except libvirt.libvirtError as exc:
                if _no_domain(exc):
                    return None
                raise

        return self._call(lookup)

    def by_domid(self, domid: int) -> Domain | None:
        if domid > _MAX_LIBVIRT_ID:
            return None
        # libvirt finds a domain by ID with a linear search of every domain
        # (milliseconds at 10,000 domains), by uuid with a hash lookup: try
        # the uuid this domid had last time first. Either answer is libvirt's.
        uuid = self._uuids.get(domid)
        if uuid is not None:
            dom = self._lookup(lambda conn: conn.lookupByUUIDString(uuid))
            if dom is not None and dom.ID() == domid:
                return Domain(domid, uuid, dom.name())
            self._uuids.pop(domid, None)
        dom = self._lookup(lambda conn: conn.lookupByID(domid))
        # Found by ID means active; still check, as the domain may just have ended.
        found = None if dom is None else _active(dom)
        if found is not None:
            self._uuids[domid] = found.uuid
        return found

    def incarnation(self, domid: int) -> Incarnation | None:
        domain = self.by_domid(domid)
        return None if domain is None else domain.incarnation

    def _list(self) -> list[Any]:
        listed: list[Any] = self._call(
            lambda conn: conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        )
        return listed

    def domains(self) -> Sequence[Domain]:
        found = [d for d in map(_active, self._list()) if d is not None]
        self._uuids = {d.domid: d.uuid for d in found}
        return sorted(found, key=lambda d: d.domid)

    def incarnations(self) -> set[Incarnation]:
        # Without names: a reap of many domains builds nothing it would drop.
        uuids: dict[int, str] = {}
        for dom in self._list():
            domid = dom.ID()
            if domid >= 0:
                uuids[domid] = dom.UUIDString()
        self._uuids = uuids
        return set(itertools.starmap(Incarnation, uuids.items()))

    def lives(self, incarnation: Incarnation) -> bool:
        # By uuid: libvirt's hash lookup, not its linear search by ID.
        dom = self._lookup(lambda conn: conn.lookupByUUIDString(incarnation.uuid))
        return dom is not None and dom.ID() == incarnation.domid

    def by_uuid(self, uuid: str) -> Sequence[Domain]:
        dom = self._lookup(lambda conn: conn.lookupByUUIDString(uuid))
        active = None if dom is None else _active(dom)
        return [] if active is None else [active]

    def by_name(self, name: str) -> Domain | None:
        dom = self._lookup(lambda conn: conn.lookupByName(name))
        return None if dom is None else _active(dom)

    def close(self, store: str | None = None) -> None:
        # Never reopened after this (a call on a closed connection would reconnect).
        conn, self._conn = self._conn, Closed(store)
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


class LifecycleEvents:
    """A connection that reports ended incarnations and its own loss.

    *on_event* gets ``(uuid, domid, ended)`` from libvirt's event loop thread:
    ``domid`` is -1 when libvirt no longer knows it (STOPPED of a persistent
    domain), ``ended`` is False for a start. *on_lost* is called once when
    the connection closes (daemon gone, keepalive timeout). Callbacks must
    only hand the news over to another thread: they run in the event loop.
    The caller must have run ``libvirt.virEventRegisterDefaultImpl()`` and
    be running its loop before the connection opens.
    """

    def __init__(
        self,
        uri: str,
        on_event: Callable[[str, int, bool], None],
        on_lost: Callable[[], None],
        *,
        keepalive: tuple[int, int] = (5, 3),
    ) -> None:
        self._conn: Any = open_connection(uri)
        try:
            # A hung daemon, or a broken link that no EOF reports, is noticed
            # after interval * (count + 1) seconds. Drivers inside this
            # process (test:///default, xen:// opened as root) have no link.
            try:
                self._conn.setKeepAlive(*keepalive)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                    raise
            self._conn.registerCloseCallback(lambda _conn, _reason, _opaque: on_lost(), None)
            self._callback = self._conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle(on_event), None
            )
        except libvirt.libvirtError as exc:
            self._conn.close()
            raise SourceUnavailable(f"cannot watch libvirt {uri}: {exc}") from exc

    @staticmethod
    def _lifecycle(on_event: Callable[[str, int, bool], None]) -> Callable[..., None]:
        def lifecycle(_conn: Any, dom: Any, event: int, _detail: int, _opaque: object) -> None:
            if event == libvirt.VIR_DOMAIN_EVENT_STARTED:
                on_event(dom.UUIDString(), dom.ID(), False)
            elif event in _ENDING_EVENTS:
                on_event(dom.UUIDString(), dom.ID(), True)

        return lifecycle

    def close(self) -> None:
        """Stop listening; the close callback does not fire for this."""
        conn = self._conn
        for release in (
            lambda: conn.domainEventDeregisterAny(self._callback),
            conn.unregisterCloseCallback,
            conn.close,
        ):
            # A dead connection has nothing left to release.
            with contextlib.suppress(libvirt.libvirtError):
                release()
