"""The contract (DESIGN section 1), written once above every store and source:
validate, lock, check that the domain lives, then delegate.

Which stores can do more is asked here by name: a ``OneStepTable`` acts on
a managed domain's item in one step, a ``ClusterStore`` migrates between
hosts, a ``SharedDirectory`` has debris to sweep and domains of other
programs to protect from ``reap`` (see ``reaper.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import cast

from . import _handoff, reaper
from ._errors import (
    CorruptItem,
    DataTooLarge,
    DomainNotFound,
    InvalidData,
    InvalidDomain,
    InvalidUserid,
    NotClustered,
    NotManaged,
)
from ._types import DEFAULT_MAX_ITEM_SIZE, Incarnation, Item, check_domid
from ._userid import check_userid
from .domains import DomainSource, ManagedDomains, open_source
from .stores import ClusterStore, HeldLock, OneStepTable, Store, StoreOptions, default_url, open_store
from .stores._handoff import AdoptedLock, HandedLock, HandsOff
from .stores.base import NO_DOMAIN

#: How long a call waits for a domain's lock before LockTimeout.
DEFAULT_LOCK_TIMEOUT = 60.0

ReapReport = reaper.ReapReport


class Context:
    """Userdata of the domains of one source, kept in one store.

    Thread-safe: calls from several threads are serialised. For parallel work
    open one context per thread or process; the domain locks hold between them.
    """

    def __init__(
        self,
        store: Store,
        source: DomainSource,
        *,
        max_item_size: int = DEFAULT_MAX_ITEM_SIZE,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        self._store = store
        self._source = source
        self.max_item_size = max_item_size
        self.lock_timeout = lock_timeout
        self._mutex = threading.RLock()
        # Domains whose lock this context holds (``lock()``); None once destroyed.
        self._held: dict[int, Incarnation | None] = {}
        # Held domains whose lock is held through a handle other processes share
        # (handed off or inherited): each call re-checks the lock and the domain.
        self._handles: dict[int, AdoptedLock] = {}
        # The one-step managed calls, when the store keeps the managed domains and has them.
        table = store.domain_table() if isinstance(source, ManagedDomains) else None
        self._one_step = table if isinstance(table, OneStepTable) else None

    @property
    def store_url(self) -> str:
        return self._store.url

    @property
    def domains(self) -> DomainSource:
        """The domain source; a ManagedDomains (with create) for ``managed``."""
        return self._source

    @property
    def managed(self) -> ManagedDomains:
        """The managed domain source; NotManaged if the source is another."""
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

    @contextmanager
    def _locked(self, domid: int) -> Iterator[Incarnation]:
        incarnation, lock = self._acquire(domid)
        try:
            yield incarnation
        finally:
            if lock is not None:
                lock.release()

    @contextmanager
    def lock(self, domid: int) -> Iterator[Incarnation]:
        """Hold the domain's lock for a read-modify-write spanning several calls.

        Calls made on this context inside the block use the held lock. Other
        contexts and processes wait (up to ``lock_timeout``, then LockTimeout).
        Yields the domain's incarnation; DomainNotFound if it is not alive.
        """
        domid = self._checked_domid(domid)
        with self._mutex:
            incarnation, lock = self._acquire(domid)
            if lock is None:
                # Already held by this context: the outer block releases it.
                yield incarnation
                return
            self._held[domid] = incarnation
            try:
                yield incarnation
            finally:
                del self._held[domid]
                lock.release()

    @contextmanager
    def handoff(self, domid: int) -> Iterator[_handoff.HandOff]:
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
        domid = self._checked_domid(domid)
        store = self._store
        host = store.host if isinstance(store, ClusterStore) else None
        with self._mutex:
            inherited = self._handles.get(domid)
            if inherited is not None:
                incarnation, again = self._acquire(domid)
                if again is not None:
                    again.release()
                yield _handoff.HandOff(incarnation, _handoff.Grant(inherited.fd, incarnation, host))
                return
            if domid in self._held:
                raise RuntimeError(f"domain {domid}: take ctx.handoff() instead of ctx.lock(), not inside it")
            if not isinstance(store, HandsOff):
                raise NotImplementedError(f"{type(store).__name__} cannot hand its lock to another process")
            incarnation, taken = self._acquire(domid, store.hand_off)
            lock = cast(HandedLock, taken)
            if not lock.shared:
                self._held[domid] = incarnation
            self._handles[domid] = lock
            try:
                yield _handoff.HandOff(incarnation, _handoff.Grant(lock.fd, incarnation, host))
            finally:
                del self._handles[domid]
                self._held.pop(domid, None)
                lock.release()

    def _adopt(self, grant: _handoff.Grant) -> None:
        """Use the lock this process inherited, if the store proves *grant*'s
        handle holds its lock of that incarnation (for this host)."""
        store = self._store
        host = store.host if isinstance(store, ClusterStore) else None
        if grant.host != host or not isinstance(store, HandsOff):
            return
        handle = store.adopt(grant.fd, grant.incarnation)
        if handle is not None:
            self._handles[grant.incarnation.domid] = handle
            if not handle.shared:
                self._held[grant.incarnation.domid] = grant.incarnation

    # -- the contract ------------------------------------------------------

    def _checked(self, domid: object, userid: object) -> tuple[int, str]:
        """Validate a call's domid and userid; errors name the store and both."""
        try:
            return check_domid(domid), check_userid(userid)
        except (InvalidDomain, InvalidUserid) as exc:
            named = userid if isinstance(userid, str) else None
            raise type(exc)(exc.what, store=self._store.url, domain=domid, userid=named) from None

    def _checked_domid(self, domid: object) -> int:
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
                if done is NO_DOMAIN:
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
        with self._mutex:
            if self._one_step is not None and domid not in self._held:
                data = self._one_step.get_item(domid, userid, self.lock_timeout)
                if data is NO_DOMAIN:
                    raise self._no_domain(domid, userid)
                return self._item(data, domid, userid)
            with self._locked(domid) as incarnation:
                return self._item(self._store.get(incarnation, userid), domid, userid)

    def unlink(self, domid: int, userid: str) -> bool:
        """Delete the item; whether there was one. DomainNotFound if the domain is not alive."""
        domid, userid = self._checked(domid, userid)
        with self._mutex:
            if self._one_step is not None and domid not in self._held:
                deleted = self._one_step.delete_item(domid, userid, self.lock_timeout)
                if deleted is NO_DOMAIN:
                    raise self._no_domain(domid, userid)
                return deleted
            with self._locked(domid) as incarnation:
                return self._store.delete(incarnation, userid)

    def list(self, domid: int | None = None, *, all_hosts: bool = False) -> Sequence[Item]:
        """The items (userid and size) of a live domain, or of the whole store.

        With a domid: DomainNotFound if it is not alive. Without: every item,
        dead incarnations' included (what ``reap`` would collect); with
        ``all_hosts``, every host's items in a cluster store.
        """
        if domid is None:
            with self._mutex:
                if all_hosts and isinstance(self._store, ClusterStore):
                    return self._store.items_everywhere()
                return self._store.items(None)
        domid = self._checked_domid(domid)
        with self._mutex, self._locked(domid) as incarnation:
            return self._store.items(incarnation)

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
                    removed = self._store.drop([incarnation])
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
        lock = None
        if incarnation.domid not in self._held:
            lock = self._store.lock(incarnation.domid, incarnation.uuid, self.lock_timeout)
        try:
            if self._source.incarnation(incarnation.domid) == incarnation:
                return 0
            return self._store.drop([incarnation])
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
        with self._mutex:
            return reaper.reap(
                self._store, self._source, set(self._held), self.lock_timeout, dry_run=dry_run, force=force
            )

    # -- lifetime ----------------------------------------------------------

    def close(self) -> None:
        """Close the store and the source."""
        try:
            self._source.close()
        finally:
            self._store.close()

    def __enter__(self) -> Context:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open(  # noqa: A001 - domdata.open, as sqlite3.connect or shelve.open
    store: str | None = None,
    domains: str = "managed",
    *,
    durable: bool = True,
    max_item_size: int = DEFAULT_MAX_ITEM_SIZE,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    host: str | None = None,
) -> Context:
    """Open a context on the store *store* (a URL; default: SQLite in the user's
    state directory) with domains from *domains* (``managed`` or ``libvirt:<uri>``).

    ``durable=False`` skips the fsync / synchronous commit of each write: an
    item stored just before a machine crash may be lost (never torn).
    In a process started under ``ctx.handoff()`` or ``domdata lock``, the
    context uses the inherited lock of that domain, if it proves to be this
    store's (docs/locking.md).
    """
    options = StoreOptions(durable=durable, host=host, lock_timeout=lock_timeout)
    opened = open_store(store or default_url(), options)
    try:
        source = open_source(domains, opened)
    except BaseException:
        opened.close()
        raise
    ctx = Context(opened, source, max_item_size=max_item_size, lock_timeout=lock_timeout)
    grant = _handoff.inherited()
    if grant is not None:
        try:
            ctx._adopt(grant)
        except BaseException:
            ctx.close()
            raise
    return ctx
