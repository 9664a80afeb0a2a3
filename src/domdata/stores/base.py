"""What a store is: the one interface every backend implements in full, and
the capabilities only some have.

A store knows nothing of the contract: it is handed valid userids, bytes
within the size limit and incarnations the domain source vouched for, under
the domain's lock. The contract layer (``domdata._context``) does the rest.

To add a backend, implement :class:`Store` (items and the per-domain lock)
and :class:`DomainTable` (the managed domains, kept beside the items), in
one module under ``domdata/stores/``, and name its URL scheme in
``stores/__init__.py``. The rest is optional and asked for by name:

- :class:`OneStepTable`: the managed calls in one step (one statement, one
  round trip) instead of lock, look up, act;
- :class:`ClusterStore`: hosts, and moving a domain's data between them;
- :class:`SharedDirectory`: a directory other programs (libxl) write too,
  with their debris to sweep and their domains to protect from ``reap``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Sequence, Set
    from typing import NamedTuple, Protocol

    from .._boot import Boot
    from .._changes import Removal, Retention
    from .._types import Domain, Incarnation, Item
    from .._xen_view import XenView
else:
    from .._named import NamedTuple


class StoreDescription(NamedTuple):
    """What ``domdata info`` shows of a store (``Store.describe``)."""

    #: The database file, the directory, or the server and database.
    location: str
    #: The schema version the store is at; None for a layout without one (libxl's).
    schema_version: int | None
    #: Cluster stores: the host this context speaks for.
    host: str | None = None


class Holdings(NamedTuple):
    """What a store holds, in two words."""

    items: bool
    domains: bool


class StoreOptions(NamedTuple):
    """How a context wants its store to behave."""

    #: fsync / synchronous commit before ``put`` returns.
    durable: bool = True
    #: Cluster stores: the host this context's domids belong to.
    host: str | None = None
    #: How long the store's own waits last (a directory lock, a busy database).
    lock_timeout: float = 60.0
    #: How long the change feed keeps changes; None: as the store has it.
    retention: Retention | None = None


if TYPE_CHECKING:

    class HeldLock(Protocol):
        """A per-domain lock, held until ``release`` or ``discard``."""

        def release(self) -> None:
            """Let the next caller have the lock."""

        def discard(self) -> None:
            """Release a lock whose incarnation has ended: a store whose lock is
            a file of that incarnation (libxl) removes the file."""


class Store(ABC):
    """Items keyed by (incarnation, userid), with a per-domain lock."""

    #: The URL the store was opened with, safe to print (no password).
    url: str
    #: The lock belongs to an incarnation, not to a domid (libxl's lock file
    #: names the uuid): the contract looks the incarnation up before locking.
    lock_names_incarnation: bool = False

    @abstractmethod
    def lock(self, domid: int, uuid: str | None, timeout: float) -> HeldLock:
        """Take the domain's lock, shared with every process using this store.

        *uuid* is given when ``lock_names_incarnation``. Waits at most
        *timeout* seconds, then raises LockTimeout.
        """

    @abstractmethod
    def get(self, incarnation: Incarnation, userid: str) -> bytes | None:
        """The item's bytes, or None when there is none."""

    @abstractmethod
    def put(self, incarnation: Incarnation, userid: str, data: bytes) -> None:
        """Replace the item atomically (and durably unless told otherwise)."""

    @abstractmethod
    def delete(self, incarnation: Incarnation, userid: str) -> bool:
        """Delete the item; whether there was one."""

    @abstractmethod
    def items(self, incarnation: Incarnation | None) -> Sequence[Item]:
        """The items of one incarnation, or of every incarnation, by userid."""

    @abstractmethod
    def drop(self, incarnations: Collection[Incarnation], op: Removal) -> int:
        """Delete every item of these incarnations (called under their locks);
        how many went. *op* says why, for a store's change feed."""

    @abstractmethod
    def incarnations(self) -> Set[tuple[int, str]]:
        """Every incarnation that has at least one item, as ``(domid, uuid)`` pairs."""

    @abstractmethod
    def follow_boot(self, boot: Boot) -> None:
        """Bind what this store writes from now on to *boot*, and treat items
        written during an earlier boot as absent (``get``, ``delete``, and
        ``items`` of one incarnation). Called once, before any other call, for
        a domain source whose domains die with the host; items written by a
        store that never follows a boot (managed domains) belong to no boot."""

    @abstractmethod
    def earlier_boot(self) -> Sequence[Item]:
        """The items of an earlier boot than the one followed (none if none is)."""

    @abstractmethod
    def drop_earlier_boot(self, incarnations: Collection[Incarnation]) -> int:
        """Delete these incarnations' items of an earlier boot, keeping the
        ones written during this boot (called under their locks); how many
        went. The change feed records them as ``reap``."""

    @abstractmethod
    def domain_table(self) -> DomainTable:
        """The managed domains' table, kept in this store."""

    @abstractmethod
    def bound_source(self) -> str | None:
        """The domain source that governs this store (this host's, on a
        cluster store), as recorded by ``bind_source``; None if none is."""

    @abstractmethod
    def bind_source(self, spec: str) -> None:
        """Record *spec* (a canonical source spec) as the governing source."""

    @abstractmethod
    def holdings(self) -> Holdings:
        """Whether the store (this host's part) has any item, any managed domain."""

    @abstractmethod
    def describe(self) -> StoreDescription:
        """Where the data is, at which schema version, for which host."""

    @abstractmethod
    def close(self) -> None:
        """Release the store's connections and files."""


class DomainTable(ABC):
    """The managed-domain face of a store: the domains that the ``managed``
    source creates and destroys, kept beside their items."""

    @abstractmethod
    def add(self, domid: int | None, uuid: str, name: str | None) -> Domain:
        """Insert a domain; ``domid=None`` takes the lowest free domid >= 1.

        Raises DomainExists when the domid or the name is taken.
        """

    @abstractmethod
    def remove(self, incarnation: Incarnation) -> int:
        """Delete the domain and all its items (under its lock); how many items went."""

    @abstractmethod
    def get(self, domid: int) -> Domain | None:
        """The live domain with this domid, or None."""

    @abstractmethod
    def with_uuid(self, uuid: str) -> Sequence[Domain]:
        """Every live domain with this uuid (two during a localhost migration)."""

    @abstractmethod
    def with_name(self, name: str) -> Domain | None:
        """The live domain with this name, or None."""

    @abstractmethod
    def all(self) -> Sequence[Domain]:
        """Every live domain, by domid."""

    def incarnations(self) -> set[Incarnation]:
        """Every live domain's incarnation (what ``reap`` keeps). Written from
        ``all``; a table that can answer without reading each domain whole
        (libxl's: from the names of its record files) answers itself."""
        return {domain.incarnation for domain in self.all()}


class NoDomain:
    """The type of NO_DOMAIN, its one value: what a one-step call returns when
    the domid names no managed domain."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_DOMAIN"


NO_DOMAIN = NoDomain()


class OneStepTable(DomainTable):
    """A managed-domain face that acts on an item in one step: it takes the
    domain's lock, finds the domain in its own table and acts, in one
    statement or one round trip (or one call over files), so the domain check
    comes after the lock as the contract wants. Each call returns NO_DOMAIN
    when the domid names no managed domain (the contract layer raises
    DomainNotFound)."""

    @abstractmethod
    def get_item(self, domid: int, userid: str, timeout: float) -> bytes | NoDomain | None:
        """The item's bytes, or None when the domain has no such item."""

    @abstractmethod
    def put_item(self, domid: int, userid: str, data: bytes, timeout: float) -> NoDomain | None:
        """Replace the item."""

    @abstractmethod
    def delete_item(self, domid: int, userid: str, timeout: float) -> bool | NoDomain:
        """Delete the item; whether there was one."""


class ClusterStore(Store):
    """A store shared by several hosts: each host's domids are its own."""

    #: The host this store's calls act for.
    host: str

    @abstractmethod
    def items_everywhere(self) -> Sequence[Item]:
        """Every item of every host, by host."""

    @abstractmethod
    def migrate(self, incarnation: Incarnation, host: str, domid: int) -> int:
        """Move an incarnation's items (and managed domain) to (host, domid) in one
        transaction; how many items moved. ItemsClash if the destination has
        items of the same userids, DomainExists if it runs another domain."""


class SharedDirectory(Store):
    """A directory that other programs (libxl, xl) write too."""

    @abstractmethod
    def sweep(self, dry_run: bool) -> list[str]:
        """Remove (or, with *dry_run*, only list) the debris a crash leaves:
        temporary files, lock files of incarnations that have nothing left."""

    @abstractmethod
    def check_reap(self, xen_view: XenView) -> None:
        """Raise ReapRefused unless a source with this view of Xen's domains
        can say which of the directory's domains are dead."""

