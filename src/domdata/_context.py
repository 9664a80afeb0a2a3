"""The contract (DESIGN section 1), written once above every store and source:
validate, lock, check that the domain lives, then delegate."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from types import TracebackType

from ._changes import Change, ChangeFeed, ChangeOp, Listing, Retention
from ._errors import (
    DataTooLarge,
    DomainNotFound,
    InvalidData,
    InvalidDomain,
    InvalidUserid,
    LockTimeout,
    NotManaged,
    StoreUnavailable,
)
from ._types import DEFAULT_MAX_ITEM_SIZE, Incarnation, check_domid
from ._userid import check_userid
from .domains import DomainSource, ManagedDomains, open_source
from .stores import HeldLock, Store, StoreOptions, default_url, open_store

#: How long a call waits for a domain's lock before LockTimeout.
DEFAULT_LOCK_TIMEOUT = 60.0
#: Reap locks and drops dead incarnations this many at a time (bounded open files).
_REAP_BATCH = 256


@dataclass(slots=True)
class ReapReport:
    """What ``reap`` removed (or, with ``dry_run``, would remove)."""

    incarnations: list[Incarnation] = field(default_factory=list)
    items: int = 0
    leftovers: list[str] = field(default_factory=list)
    busy: list[Incarnation] = field(default_factory=list)
    dry_run: bool = False


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
        # The store's one-step calls, when it keeps the managed domains itself.
        self._fast = store.managed_ops() if isinstance(source, ManagedDomains) else None

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

    def _acquire(self, domid: int) -> tuple[Incarnation, HeldLock | None]:
        """Lock the domain, then look its incarnation up (DESIGN: check after lock)."""
        if domid in self._held:
            held = self._held[domid]
            if held is None:
                raise DomainNotFound("destroyed while its lock is held", domain=domid, store=self._store.url)
            return held, None
        store, source = self._store, self._source
        if store.lock_needs_uuid:
            # The lock's name holds the uuid: look up, lock, look again; a
            # domid reborn in between is a new incarnation, so start over.
            while True:
                incarnation = source.incarnation(domid)
                if incarnation is None:
                    break
                lock = store.lock(domid, incarnation.uuid, self.lock_timeout)
                try:
                    now = source.incarnation(domid)
                except BaseException:
                    lock.release()
                    raise
                if now == incarnation:
                    return incarnation, lock
                lock.release()
        else:
            lock = store.lock(domid, None, self.lock_timeout)
            try:
                incarnation = source.incarnation(domid)
            except BaseException:
                lock.release()
                raise
            if incarnation is not None:
                return incarnation, lock
            lock.release()
        raise DomainNotFound(f"no live domain (source {source.spec})", domain=domid, store=store.url)

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

    def adopt_lock(self, incarnation: Incarnation) -> None:
        """Treat the domain's lock as held by this context without taking it.

        For a process run by ``domdata lock DOM -- COMMAND``: its parent holds
        the lock for as long as the process runs.
        """
        self._held[incarnation.domid] = incarnation

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

    def store(self, domid: int, userid: str, data: bytes | bytearray | memoryview) -> None:
        """Replace the item atomically and durably; empty data deletes it.

        DomainNotFound if the domain is not alive; InvalidUserid, InvalidData,
        DataTooLarge for bad input. On any error the old item is left intact.
        """
        domid, userid = self._checked(domid, userid)
        payload = self._data(data, domid, userid)
        with self._mutex:
            if self._fast is not None and domid not in self._held:
                if payload:
                    self._fast.put(domid, userid, payload, self.lock_timeout)
                else:
                    self._fast.delete(domid, userid, self.lock_timeout)
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
            if self._fast is not None and domid not in self._held:
                data = self._fast.get(domid, userid, self.lock_timeout)
                return b"" if data is None else data
            with self._locked(domid) as incarnation:
                data = self._store.get(incarnation, userid)
        return b"" if data is None else data

    def unlink(self, domid: int, userid: str) -> bool:
        """Delete the item; whether there was one. DomainNotFound if the domain is not alive."""
        domid, userid = self._checked(domid, userid)
        with self._mutex:
            if self._fast is not None and domid not in self._held:
                return self._fast.delete(domid, userid, self.lock_timeout)
            with self._locked(domid) as incarnation:
                return self._store.delete(incarnation, userid)

    def list(self, domid: int | None = None, *, all_hosts: bool = False) -> Listing:
        """The items (userid and size) of a live domain, or of the whole store,
        and (``.rev``) the revision they reflect, to follow ``changes`` from.

        With a domid: DomainNotFound if it is not alive. Without: every item,
        dead incarnations' included (what ``reap`` would collect); with
        ``all_hosts``, every host's items in a cluster store.
        """
        feed = self._feed()
        if domid is None:
            with self._mutex:
                return feed.listing(None, all_hosts)
        domid = self._checked_domid(domid)
        with self._mutex, self._locked(domid) as incarnation:
            return feed.listing(incarnation, False)

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
        if since is not None and (type(since) is not int or since < 0):
            raise InvalidData(f"since is a revision, an int >= 0 (not {since!r})", store=self._store.url)
        return self._feed().changes(domid, since, follow)

    def _feed(self) -> ChangeFeed:
        if not isinstance(self._store, ChangeFeed):
            raise StoreUnavailable("this store keeps no change feed", store=self._store.url)
        return self._store

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
                    with self._removing("destroy"):
                        removed = self._store.drop([incarnation])
                if domid in self._held:
                    self._held[domid] = None
                return removed

    def migrate(self, domid: int, *, to_domid: int, to_host: str | None = None) -> int:
        """Move a live domain's data (and managed record) to *to_domid* on *to_host*
        in one transaction, as the domain migrates; how many items moved.
        Only cluster stores (PostgreSQL) have hosts to move between."""
        domid = self._checked_domid(domid)
        to_domid = self._checked_domid(to_domid)
        with self._mutex, self._locked(domid) as incarnation:
            moved = self._store.migrate(incarnation, to_host, to_domid)
            if domid in self._held:
                # The incarnation lives elsewhere now: later calls in the block fail.
                self._held[domid] = None
            return moved

    def _removing(self, op: ChangeOp) -> AbstractContextManager[None]:
        return self._store.removing(op) if isinstance(self._store, ChangeFeed) else nullcontext()

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
            if not force and not dry_run:
                self._store.check_reap(self._source.spec)
            dead = self._store.dead(self._source.incarnations)
            report = ReapReport(dry_run=dry_run)
            if dry_run:
                report.incarnations = dead
                doomed = set(dead)
                report.items = sum(1 for item in self._store.items(None) if (item.domid, item.uuid) in doomed)
                report.leftovers = self._store.leftovers(dry_run=True)
                return report
            for start in range(0, len(dead), _REAP_BATCH):
                self._reap_batch(dead[start : start + _REAP_BATCH], report)
            report.leftovers = self._store.leftovers(dry_run=False)
            return report

    def _reap_batch(self, batch: Sequence[Incarnation], report: ReapReport) -> None:
        locks: list[HeldLock] = []
        locked: list[Incarnation] = []
        try:
            for incarnation in batch:
                if incarnation.domid not in self._held:
                    try:
                        locks.append(self._store.lock(incarnation.domid, incarnation.uuid, self.lock_timeout))
                    except LockTimeout:
                        report.busy.append(incarnation)
                        continue
                locked.append(incarnation)
            report.items += self._store.drop(locked)
            report.incarnations.extend(locked)
        finally:
            for lock in locks:
                lock.release()

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
    changes_retention: Retention | None = None,
) -> Context:
    """Open a context on the store *store* (a URL; default: SQLite in the user's
    state directory) with domains from *domains* (``managed`` or ``libvirt:<uri>``).

    ``durable=False`` skips the fsync / synchronous commit of each write: an
    item stored just before a machine crash may be lost (never torn).
    ``changes_retention`` sets how long the store keeps its change feed (for
    every user of the store; None leaves it as it is, by default 24 h and
    100,000 changes).
    """
    options = StoreOptions(
        durable=durable, managed=domains == "managed", host=host, retention=changes_retention
    )
    opened = open_store(store or default_url(), options)
    try:
        source = open_source(domains, opened)
    except BaseException:
        opened.close()
        raise
    return Context(opened, source, max_item_size=max_item_size, lock_timeout=lock_timeout)
