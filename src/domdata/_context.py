"""The contract (DESIGN section 1), written once above every store and source:
validate, lock, check that the domain lives, then delegate.

Which stores can do more is asked here by name: a ``OneStepTable`` acts on
a managed domain's item in one step, a ``ClusterStore`` migrates between
hosts, a ``SharedDirectory`` has debris to sweep and domains of other
programs to protect from ``reap`` (see ``reaper.py``).
"""

from __future__ import annotations

import os
from _thread import RLock

from ._changes import Change, ChangeFeed, Listing, Retention
from ._errors import (
    CorruptItem,
    DataTooLarge,
    DomainNotFound,
    InvalidData,
    InvalidDomain,
    InvalidOption,
    InvalidURL,
    InvalidUserid,
    NotClustered,
    NotManaged,
    ReapRefused,
    SourceMismatch,
    StoreUnavailable,
)
from ._types import (
    DEFAULT_MAX_ITEM_SIZE,
    Domain,
    Incarnation,
    check_domid,
    check_lock_timeout,
    check_max_item_size,
)
from ._userid import check_userid
from .domains import DomainSource, ManagedDomains, open_source, parse_source
from .stores import (
    ClusterStore,
    OneStepTable,
    SharedDirectory,
    Store,
    StoreOptions,
    default_url,
    open_store,
)
from .stores._handoff import HandsOff
from .stores.base import NoDomain

# Not typing's: a single-item command imports no typing (issue 12).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from contextlib import AbstractContextManager
    from types import TracebackType

    from . import _handoff
    from ._report import ReapReport, StoreInfo
    from .stores._handoff import AdoptedLock, HandedLock
    from .stores.base import HeldLock

#: How long a call waits for a domain's lock before LockTimeout.
DEFAULT_LOCK_TIMEOUT = 60.0

#: How many fork()s lie between this process and the one that imported
#: domdata. A context opened at another count is a copy made by fork(): it
#: shares its opener's locks and connections, and using it would break both
#: processes' locking.
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


class _Locked:
    """The domain's lock taken for one call (None: the context holds it already),
    released when the ``with`` block ends. A class, not a generator: a
    single-item command imports no contextlib (issue 12)."""

    __slots__ = ("_lock", "incarnation")

    def __init__(self, incarnation: Incarnation, lock: HeldLock | None) -> None:
        self.incarnation = incarnation
        self._lock = lock

    def __enter__(self) -> Incarnation:
        return self.incarnation

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.release()


class _Held:
    """What ``Context.lock(domid)`` returns: its lock, held for the ``with`` block."""

    __slots__ = ("_domid", "_enter", "_leave", "_taken")

    def __init__(
        self,
        enter: Callable[[object], tuple[int, Incarnation, HeldLock | None]],
        leave: Callable[[int, HeldLock | None], None],
        domid: object,
    ) -> None:
        self._enter, self._leave, self._domid = enter, leave, domid
        self._taken: tuple[int, HeldLock | None] | None = None

    def __enter__(self) -> Incarnation:
        if self._taken is not None:
            raise RuntimeError("this ctx.lock() is already entered: nest another ctx.lock() instead")
        domid, incarnation, lock = self._enter(self._domid)
        self._taken = (domid, lock)
        return incarnation

    def __exit__(self, *exc: object) -> None:
        if self._taken is not None:
            taken, self._taken = self._taken, None
            self._leave(*taken)


class Context:
    """Userdata of the domains of one source, kept in one store.

    Thread-safe: calls from several threads are serialised. For parallel work
    open one context per thread or process; the domain locks hold between them.

    When the source's domains die with the host, a reboot ended every
    incarnation before it: items written during an earlier boot are absent
    to every call on a domain, and ``reap`` collects them.
    """

    def __init__(
        self,
        store: Store,
        source: DomainSource,
        *,
        max_item_size: int = DEFAULT_MAX_ITEM_SIZE,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        governed: bool = True,
    ) -> None:
        self._store = store
        self._source = source
        # False for a store holding data of a source it never recorded: reap waits for one named.
        self._governed = governed
        self.max_item_size = max_item_size
        self.lock_timeout = lock_timeout
        self._mutex = RLock()
        # Domains whose lock this context holds (``lock()``); None once destroyed.
        self._held: dict[int, Incarnation | None] = {}
        if source.dies_with_host:
            from . import _boot

            # A reboot ended every incarnation before it: the store binds items to this boot.
            store.follow_boot(_boot.current(source.spec))
        self._pid = os.getpid()
        # -1 once closed: every call's fork check (``_checked``) then fails,
        # and ``_usable`` says which it is, so the closed state costs a call nothing.
        self._forks = _forks
        # Held domains whose lock is held through a handle other processes share
        # (handed off or inherited): each call re-checks the lock and the domain.
        self._handles: dict[int, AdoptedLock] = {}
        # domid -> the hand-off of it this context holds (inherited or made): what a child is handed.
        self._grants: dict[int, _handoff.Grant] = {}
        # The one-step managed calls, when the store keeps the managed domains and has them.
        table = store.domain_table() if isinstance(source, ManagedDomains) else None
        self._one_step = table if isinstance(table, OneStepTable) else None

    @property
    def store_url(self) -> str:
        return self._store.url

    @property
    def bound_source(self) -> str | None:
        """The domain source the store records as governing it (DESIGN section 3)."""
        self._usable()
        return self._store.bound_source()

    @property
    def domains(self) -> DomainSource:
        """The domain source; a ManagedDomains (with create) for ``managed``."""
        self._usable()
        return self._source

    def find(self, dom: str) -> Domain:
        """The live domain that *dom* (a domid, a uuid or a name) names;
        DomainNotFound naming this store if there is none."""
        self._usable()
        if not isinstance(dom, str):
            raise InvalidDomain(
                f"a domain is named by a str (a domid, a uuid or a name), not {type(dom).__name__}",
                store=self._store.url,
            )
        try:
            return self._source.find(dom)
        except (DomainNotFound, InvalidDomain) as exc:
            raise type(exc)(exc.what, store=self._store.url, domain=exc.domain) from None

    @property
    def managed(self) -> ManagedDomains:
        """The managed domain source; NotManaged if the source is another."""
        self._usable()
        if isinstance(self._source, ManagedDomains):
            return self._source
        raise NotManaged(
            f"domains come from {self._source.spec}: create and destroy them there",
            store=self._store.url,
        )

    # -- locking -----------------------------------------------------------

    def _no_domain(self, domid: int, userid: str | None = None) -> DomainNotFound:
        return DomainNotFound(
            f"no live domain (source {self._source.spec})", domain=domid, store=self._store.url, userid=userid
        )

    def _acquire(
        self, domid: int, take: Callable[[int, str | None, float], HeldLock] | None = None
    ) -> tuple[Incarnation, HeldLock | None]:
        """Lock the domain (with *take*, default the store's ``lock``), then
        look its incarnation up (DESIGN: check after lock).

        A store whose lock names the incarnation is handed the one looked up
        first; if another incarnation (or none) lives once the lock is held,
        the one locked has ended: its lock is discarded and the look-up starts over.
        A lock shared with other processes (a hand-off) is re-checked at each
        call, and the domain with it: another process may have destroyed it.
        """
        if domid in self._held:
            held = self._held[domid]
            if held is None:
                raise DomainNotFound("destroyed while its lock is held", domain=domid, store=self._store.url)
            handle = self._handles.get(domid)
            if handle is not None:
                handle.check()
                if self._source.incarnation(domid) != held:
                    raise self._no_domain(domid)
            return held, None
        store, source = self._store, self._source
        by_incarnation = store.lock_names_incarnation
        lock_with = store.lock if take is None else take
        while True:
            guess = source.incarnation(domid) if by_incarnation else None
            if by_incarnation and guess is None:
                raise self._no_domain(domid)
            lock = lock_with(domid, None if guess is None else guess.uuid, self.lock_timeout)
            try:
                now = source.incarnation(domid)
            except BaseException:
                lock.release()
                raise
            if now is not None and (guess is None or now == guess):
                return now, lock
            if guess is None:
                lock.release()
                raise self._no_domain(domid)
            lock.discard()

    def _locked(self, domid: int) -> _Locked:
        """The domain's lock for one call: ``with self._locked(domid) as incarnation``."""
        return _Locked(*self._acquire(domid))

    def lock(self, domid: int) -> AbstractContextManager[Incarnation]:
        """Hold the domain's lock for a read-modify-write spanning several calls.

        Calls made on this context inside the block use the held lock. Other
        contexts and processes wait (up to ``lock_timeout``, then LockTimeout).
        Yields the domain's incarnation; DomainNotFound if it is not alive.
        """
        return _Held(self._hold, self._unhold, domid)

    def _hold(self, domid: object) -> tuple[int, Incarnation, HeldLock | None]:
        """``lock()``'s entry: the context's mutex, then the domain's lock,
        kept as held (none when the context holds it already)."""
        checked = self._checked_domid(domid)
        self._mutex.acquire()
        try:
            incarnation, lock = self._acquire(checked)
        except BaseException:
            self._mutex.release()
            raise
        if lock is not None:
            self._held[checked] = incarnation
        return checked, incarnation, lock

    def _unhold(self, domid: int, lock: HeldLock | None) -> None:
        """``lock()``'s exit: what ``_hold`` took, released (the outer block releases a lock held twice)."""
        try:
            if lock is not None:
                del self._held[domid]
                if self._forks != -1:  # close() let every lock go with the store's handles
                    lock.release()
        finally:
            self._mutex.release()

    def handoff(self, domid: int) -> AbstractContextManager[_handoff.HandOff]:
        """Hold the domain's lock as ``lock()`` does, on a handle that child
        processes inherit, so that their domdata calls on this domain, in this
        store, use it::

            with ctx.handoff(domid) as held:
                subprocess.run(argv, **held.popen_kwargs())

        The lock stays held after the block while a child still holds the
        handle. Inside a hand-off this process inherited, the same handle is
        passed on. Calls on the domain re-check it each time: after a child
        destroys it, they raise DomainNotFound. Take it instead of ``lock()``
        (RuntimeError inside a ``lock()`` of the same domain).
        """
        from contextlib import contextmanager  # a hand-off is rare: single calls import no contextlib

        return contextmanager(self._handing_off)(domid)

    def _handing_off(self, domid: int) -> Iterator[_handoff.HandOff]:
        from . import _handoff  # only a process handing a lock off loads it

        domid = self._checked_domid(domid)
        store = self._store
        host = store.host if isinstance(store, ClusterStore) else None
        with self._mutex:
            inherited = self._handles.get(domid)
            if inherited is not None:
                incarnation, again = self._acquire(domid)
                if again is not None:
                    again.release()
                grant = _handoff.Grant(inherited.fd, incarnation, host)
                yield _handoff.HandOff(incarnation, grant, self._other_grants(domid))
                return
            if domid in self._held:
                raise RuntimeError(f"domain {domid}: take ctx.handoff() instead of ctx.lock(), not inside it")
            if not isinstance(store, HandsOff):
                raise NotImplementedError(f"{type(store).__name__} cannot hand its lock to another process")
            from typing import cast  # a hand-off is rare: single calls import no typing

            incarnation, taken = self._acquire(domid, store.hand_off)
            lock = cast("HandedLock", taken)
            if not lock.shared:
                self._held[domid] = incarnation
            self._handles[domid] = lock
            grant = _handoff.Grant(lock.fd, incarnation, host)
            self._grants[domid] = grant
            try:
                yield _handoff.HandOff(incarnation, grant, self._other_grants(domid))
            finally:
                del self._handles[domid], self._grants[domid]
                self._held.pop(domid, None)
                lock.release()

    def _other_grants(self, domid: int) -> tuple[_handoff.Grant, ...]:
        """The hand-offs this context holds of domains other than *domid*: a
        child is handed them too, so nested ``domdata lock`` commands of
        several domains hand each of them down."""
        return tuple(grant for other, grant in self._grants.items() if other != domid)

    def _adopt(self, grant: _handoff.Grant) -> None:
        """Use the lock this process inherited, if the store proves *grant*'s
        handle holds its lock of that incarnation (for this host)."""
        store = self._store
        host = store.host if isinstance(store, ClusterStore) else None
        domid = grant.incarnation.domid
        if grant.host != host or not isinstance(store, HandsOff) or domid in self._handles:
            return
        handle = store.adopt(grant.fd, grant.incarnation)
        if handle is not None:
            self._handles[domid] = handle
            self._grants[domid] = grant
            if not handle.shared:
                self._held[domid] = grant.incarnation

    # -- the contract ------------------------------------------------------

    def _usable(self) -> None:
        """StoreUnavailable if this context is closed, or is a copy made by fork()."""
        if self._forks == -1:
            raise StoreUnavailable.closed(self._store.url)
        if self._forks != _forks:
            raise StoreUnavailable(
                f"this context was opened by process {self._pid} and copied by fork():"
                " open a new one in this process",
                store=self._store.url,
            )

    def _checked(self, domid: object, userid: object) -> tuple[int, str]:
        """Validate a call's domid and userid; errors name the store and both."""
        if self._forks != _forks:  # _usable() inline: every call's path
            self._usable()
        try:
            return check_domid(domid), check_userid(userid)
        except (InvalidDomain, InvalidUserid) as exc:
            named = userid if isinstance(userid, str) else None
            raise type(exc)(exc.what, store=self._store.url, domain=domid, userid=named) from None

    def _checked_domid(self, domid: object) -> int:
        self._usable()
        try:
            return check_domid(domid)
        except InvalidDomain as exc:
            raise InvalidDomain(exc.what, store=self._store.url, domain=domid) from None

    def _data(self, data: object, domid: int, userid: str) -> bytes:
        if type(data) is not bytes:
            if not isinstance(data, bytearray | memoryview):
                what = "str is refused: encode it first" if isinstance(data, str) else type(data).__name__
                raise InvalidData(
                    f"data is bytes, bytearray or memoryview ({what})",
                    domain=domid,
                    userid=userid,
                    store=self._store.url,
                )
            size = memoryview(data).nbytes
            if size > self.max_item_size:
                self._too_large(size, domid, userid)
            return bytes(data)
        if len(data) > self.max_item_size:
            self._too_large(len(data), domid, userid)
        return data

    def _too_large(self, size: int, domid: int, userid: str) -> None:
        raise DataTooLarge(
            f"{size} bytes is over the limit of {self.max_item_size} bytes per item",
            domain=domid,
            userid=userid,
            store=self._store.url,
        )

    def _item(self, data: bytes | None, domid: int, userid: str) -> bytes:
        """What a store read becomes: ``b""`` when absent; an empty item is a torn write."""
        if data is None:
            return b""
        if not data:
            raise CorruptItem(
                "the item is empty: a torn write (libxl refuses an empty userdata file too)",
                store=self._store.url,
                domain=domid,
                userid=userid,
            )
        return data

    def store(self, domid: int, userid: str, data: bytes | bytearray | memoryview) -> None:
        """Replace the item atomically and durably; empty data deletes it.

        DomainNotFound if the domain is not alive; InvalidUserid, InvalidData,
        DataTooLarge for bad input. On any error the old item is left intact.
        """
        domid, userid = self._checked(domid, userid)
        payload = self._data(data, domid, userid)
        with self._mutex:
            if self._one_step is not None and domid not in self._held:
                done: object
                if payload:
                    done = self._one_step.put_item(domid, userid, payload, self.lock_timeout)
                else:
                    done = self._one_step.delete_item(domid, userid, self.lock_timeout)
                if isinstance(done, NoDomain):
                    raise self._no_domain(domid, userid)
                return
            with self._locked(domid) as incarnation:
                if payload:
                    self._store.put(incarnation, userid, payload)
                else:
                    self._store.delete(incarnation, userid)

    def retrieve(self, domid: int, userid: str) -> bytes:
        """The item, or ``b""`` when there is none (absent is not an error).

        DomainNotFound if the domain is not alive; CorruptItem for a torn item.
        """
        domid, userid = self._checked(domid, userid)
        # acquire and release, not `with`: about 0.5 µs less on the most frequent call.
        mutex = self._mutex
        mutex.acquire()
        try:
            if self._one_step is not None and domid not in self._held:
                data = self._one_step.get_item(domid, userid, self.lock_timeout)
                if type(data) is bytes and data:
                    return data  # the common case, before the rarer ones
                if isinstance(data, NoDomain):
                    raise self._no_domain(domid, userid)
                return self._item(data, domid, userid)
            with self._locked(domid) as incarnation:
                return self._item(self._store.get(incarnation, userid), domid, userid)
        finally:
            mutex.release()

    def unlink(self, domid: int, userid: str) -> bool:
        """Delete the item; whether there was one. DomainNotFound if the domain is not alive."""
        domid, userid = self._checked(domid, userid)
        with self._mutex:
            if self._one_step is not None and domid not in self._held:
                deleted = self._one_step.delete_item(domid, userid, self.lock_timeout)
                if isinstance(deleted, NoDomain):
                    raise self._no_domain(domid, userid)
                return deleted
            with self._locked(domid) as incarnation:
                return self._store.delete(incarnation, userid)

    def list(self, domid: int | None = None, *, all_hosts: bool = False) -> Listing:
        """The items (userid and size) of a live domain, or of the whole store,
        and (``.rev``) the revision they reflect, to follow ``changes`` from.

        With a domid: DomainNotFound if it is not alive. Without: every item,
        dead incarnations' included (what ``reap`` would collect); with
        ``all_hosts``, every host's items in a cluster store.
        """
        store = self._store
        if domid is None:
            self._usable()
            with self._mutex:
                everywhere = all_hosts and isinstance(store, ClusterStore)
                if isinstance(store, ChangeFeed):
                    return store.listing(None, everywhere)
                if isinstance(store, ClusterStore) and everywhere:
                    return Listing(store.items_everywhere(), 0)
                return Listing(store.items(None), 0)
        domid = self._checked_domid(domid)
        with self._mutex, self._locked(domid) as incarnation:
            if isinstance(store, ChangeFeed):
                return store.listing(incarnation, False)
            return Listing(store.items(incarnation), 0)

    def changes(
        self, domid: int | None = None, since: int | None = None, follow: bool = False
    ) -> Iterator[Change]:
        """The changes to items (of one domid, or all) after revision *since*, in
        revision order; every retained one if *since* is None. With *follow*,
        then wait and yield each new change as it commits, from any process.

        ChangesLost (at once) if the changes after *since* are no longer kept:
        list again and follow from ``list(...).rev``.
        """
        if domid is not None:
            domid = self._checked_domid(domid)
        self._usable()
        if since is not None and (type(since) is not int or since < 0):
            raise InvalidData(f"since is a revision, an int >= 0 (not {since!r})", store=self._store.url)
        if not isinstance(self._store, ChangeFeed):
            raise StoreUnavailable("this store keeps no change feed", store=self._store.url)
        return self._store.changes(domid, since, follow)

    def destroy(self, domain: int | Incarnation) -> int:
        """The domain is going away: remove all its data; how many items went.

        With a domid the domain must be alive (DomainNotFound otherwise); for
        ``managed`` domains the domain itself goes too, in the same transaction.
        With an Incarnation that has ended (a daemon collecting a death), its
        data is removed; an incarnation that is still alive is left alone.
        """
        with self._mutex:
            if isinstance(domain, Incarnation):
                return self._collect(domain)
            domid = self._checked_domid(domain)
            with self._locked(domid) as incarnation:
                if isinstance(self._source, ManagedDomains):
                    removed = self._source.remove(incarnation)
                else:
                    removed = self._store.drop([incarnation], "destroy")
                if domid in self._held:
                    self._held[domid] = None
                return removed

    def migrate(self, domid: int, *, to_domid: int, to_host: str | None = None) -> int:
        """Move a live domain's data (and managed record) to *to_domid* on *to_host*
        in one transaction, as the domain migrates; how many items moved.
        Only cluster stores (PostgreSQL) have hosts: NotClustered elsewhere."""
        domid = self._checked_domid(domid)
        to_domid = self._checked_domid(to_domid)
        store = self._store
        if not isinstance(store, ClusterStore):
            raise NotClustered(f"{type(store).__name__} has no hosts to migrate between", store=store.url)
        with self._mutex, self._locked(domid) as incarnation:
            moved = store.migrate(incarnation, store.host if to_host is None else to_host, to_domid)
            if domid in self._held:
                # The incarnation lives elsewhere now: later calls in the block fail.
                self._held[domid] = None
            return moved

    def _collect(self, incarnation: Incarnation) -> int:
        self._usable()
        lock = None
        if incarnation.domid not in self._held:
            lock = self._store.lock(incarnation.domid, incarnation.uuid, self.lock_timeout)
        try:
            if self._source.incarnation(incarnation.domid) == incarnation:
                return 0
            return self._store.drop([incarnation], "reap")
        finally:
            if lock is not None:
                lock.release()

    def reap(self, *, dry_run: bool = False, force: bool = False) -> ReapReport:
        """Remove the data of every incarnation that no longer lives, and debris.

        The store is read before the source: an incarnation with data that the
        source no longer lists has ended and cannot come back. Each one is
        locked before its data goes, so a write racing its death is collected
        too. ReapRefused if the store says the source does not govern it
        (``force`` overrides). ``dry_run`` only reports.
        """
        from . import reaper  # only what reap runs: single calls do not import it

        self._usable()
        with self._mutex:
            return reaper.reap(
                self._store,
                self._source,
                set(self._held),
                self.lock_timeout,
                dry_run=dry_run,
                force=force,
                governed=self._governed,
            )

    def info(self) -> StoreInfo:
        """Which store (URL, where, schema version, host) and source this context uses."""
        from ._report import StoreInfo

        self._usable()
        with self._mutex:
            described = self._store.describe()
            bound = self._store.bound_source()
        return StoreInfo(
            self._store.url,
            described.location,
            described.schema_version,
            self._source.spec,
            bound,
            described.host,
        )

    # -- lifetime ----------------------------------------------------------

    def close(self) -> None:
        """Close the store and the source, and with them every lock this
        context holds. Closing again does nothing; any other call on a closed
        context raises StoreUnavailable."""
        if self._forks == -1:
            return
        self._forks = -1
        try:
            self._source.close(self._store.url)
        finally:
            self._store.close()

    def __enter__(self) -> Context:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _govern(store: Store, source: DomainSource, bound: str | None, *, named: bool) -> bool:
    """Hold *source* against the source the store records (DESIGN section 3),
    recording it the first time; whether the store is governed by it.

    A store that holds nothing takes any source. A store of an older domdata
    that holds data but records nothing is governed by ``managed`` if it has
    managed domains, else by the first source named for it. A directory that
    holds libxl's own domains is governed only by a source that sees Xen's.
    """
    spec = source.spec
    if bound == spec or (bound is not None and not named):
        return True
    holds = store.holdings()
    if holds.items or holds.domains:
        if bound is None and holds.domains:
            bound = "managed"
        if bound is not None and bound != spec:
            raise SourceMismatch(
                f"the store is governed by the domain source {bound}, not {spec}: nothing was read or"
                f" written (domdata bind {spec} changes it)",
                store=store.url,
            )
        if bound is None and not named:
            return False
        from ._xen_view import XenView  # libxl's directory: not on a single call's path

        if isinstance(store, SharedDirectory) and source.xen_view is XenView.NONE:
            try:
                store.check_reap(XenView.NONE)
            except ReapRefused:
                raise SourceMismatch(
                    f"the store holds domains libxl created: only a source that sees Xen's domains (xen,"
                    f" libvirt:xen:///system) can govern it, not {spec}; nothing was read or written",
                    store=store.url,
                ) from None
    store.bind_source(spec)
    return True


def _url(store: str | None) -> str:
    """The store URL: as given, else ``$DOMDATA_STORE`` (as the command line), else the default."""
    if store is not None and not isinstance(store, str):
        raise InvalidURL(f"a store URL is a str, not {type(store).__name__}", store=repr(store))
    if store == "":  # "$UNSET" in a script: not the default store, silently
        raise InvalidURL("the store URL is empty (None means the default store)", store="''")
    return store or os.environ.get("DOMDATA_STORE") or default_url()


def _open(
    store: str | None, domains: str | None, options: StoreOptions
) -> tuple[Store, DomainSource, str | None]:
    url = _url(store)
    if domains is not None and not isinstance(domains, str):
        raise InvalidOption(
            f"domains is a str (managed, libvirt:<uri>, xen), not {type(domains).__name__}", store=url
        )
    # A source that lives outside the store is opened first: if it fails, no
    # store (no database file) was created for nothing.
    outside = domains is not None and parse_source(domains).kind != "managed"
    source = open_source(domains, None) if domains is not None and outside else None
    try:
        opened = open_store(url, options)
    except BaseException:
        if source is not None:
            source.close()
        raise
    try:
        bound = opened.bound_source()
        return opened, source or open_source(domains or bound or "managed", opened), bound
    except BaseException:
        opened.close()
        raise


def open(  # noqa: A001 - domdata.open, as sqlite3.connect or shelve.open
    store: str | None = None,
    domains: str | None = None,
    *,
    durable: bool = True,
    max_item_size: int = DEFAULT_MAX_ITEM_SIZE,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    host: str | None = None,
    changes_retention: Retention | None = None,
) -> Context:
    """Open a context on the store *store* (a URL; default: ``$DOMDATA_STORE``,
    else SQLite in the user's state directory) with domains from *domains*
    (``managed``, ``libvirt:<uri>`` or ``xen``; default: the source the store
    records, else ``managed``).

    A store is governed by one source, recorded the first time it is used:
    naming another one raises SourceMismatch before anything is read or
    written (``bind`` changes it). ``durable=False`` skips the fsync /
    synchronous commit of each write: an item stored just before a machine
    crash may be lost (never torn). ``changes_retention`` sets how long the
    store keeps its change feed (for every user of the store; None leaves it
    as it is, by default 24 h and 100,000 changes).
    In a process started under ``ctx.handoff()`` or ``domdata lock``, the
    context uses the inherited lock of that domain, if it proves to be this
    store's (docs/locking.md).

    Options are checked before anything is opened, with the command line's
    bounds: ``lock_timeout`` a number of seconds in 0..``MAX_LOCK_TIMEOUT``
    (nan and infinities refused), ``max_item_size`` an int in
    1..``MAX_ITEM_SIZE_CAP`` (10^9), ``host`` a str, ``changes_retention`` a
    ``Retention``; InvalidOption (both a ValueError and a TypeError) if one is
    not. A *store* that is not a str, or a URL that begins or ends with a
    space, holds a control character or an unmatched ``[``, is InvalidURL;
    *domains* that is not a str is InvalidOption.
    """
    lock_timeout = check_lock_timeout(lock_timeout)
    max_item_size = check_max_item_size(max_item_size)
    _check_host_and_retention(host, changes_retention)
    options = StoreOptions(durable=durable, host=host, lock_timeout=lock_timeout, retention=changes_retention)
    opened, source, bound = _open(store, domains, options)
    try:
        ctx = Context(opened, source, max_item_size=max_item_size, lock_timeout=lock_timeout)
        # _handoff.ENV: that module loads only in a process handed a lock.
        if os.environ.get("DOMDATA_LOCKED"):
            from ._handoff import inherited

            for grant in inherited():
                ctx._adopt(grant)
        # Recorded only once everything else about opening has worked.
        ctx._governed = _govern(opened, source, bound, named=domains is not None)
    except BaseException:
        source.close()
        opened.close()
        raise
    return ctx


def _check_host_and_retention(host: object, retention: object) -> None:
    if host is not None and not isinstance(host, str):
        raise InvalidOption(f"host is a str, not {type(host).__name__}")
    if retention is not None and not isinstance(retention, Retention):
        raise InvalidOption(
            f"changes_retention is a domdata.Retention (or None), not {type(retention).__name__}"
        )


def reap_earlier_boots(
    store: str | None = None,
    domains: str | None = None,
    *,
    dry_run: bool = False,
    durable: bool = True,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    host: str | None = None,
) -> ReapReport:
    """At boot, before any domain of *domains* (default: the source the store
    records) starts: remove the items that earlier boots of this host left in
    *store*.

    A reboot ended every incarnation that ran before it (when the source's
    domains die with the host; with any other source there is nothing to
    remove), so the source is not asked, nor even opened: libvirtd need not
    run yet. The items of this boot are kept.
    """
    from . import _boot, reaper
    from ._report import ReapReport

    lock_timeout = check_lock_timeout(lock_timeout)
    _check_host_and_retention(host, None)
    opened = open_store(_url(store), StoreOptions(durable=durable, host=host, lock_timeout=lock_timeout))
    try:
        spec = domains or opened.bound_source() or "managed"
        if not parse_source(spec).dies_with_host:
            return ReapReport(dry_run=dry_run)
        opened.follow_boot(_boot.current(spec))
        return reaper.reap_earlier_boots(opened, lock_timeout, dry_run=dry_run)
    finally:
        opened.close()


def recorded_source(store: str | None, *, host: str | None = None) -> str | None:
    """The source *store* records as governing it (this host's part), if any."""
    opened = open_store(_url(store), StoreOptions(host=host))
    try:
        return opened.bound_source()
    finally:
        opened.close()


def bind(store: str | None, domains: str, *, host: str | None = None) -> tuple[str | None, str]:
    """Record *domains* as the source that governs *store* (this host's part of
    a cluster store), whatever it holds: ``(the source it replaces or None,
    the source recorded, in canonical form)``."""
    opened, source, bound = _open(store, domains, StoreOptions(host=host))
    try:
        opened.bind_source(source.spec)
        return bound, source.spec
    finally:
        source.close()
        opened.close()
