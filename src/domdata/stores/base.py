"""The Store interface: where items (and the managed domain table) live.

A store knows nothing of the contract: it is handed valid userids, bytes
within the size limit and incarnations the domain source vouched for, under
the domain's lock. The contract layer (``domdata._context``) does the rest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from .._changes import Retention
from .._errors import NotManaged
from .._types import Domain, Incarnation, Item


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """How a context wants its store to behave."""

    #: fsync / synchronous commit before ``put`` returns.
    durable: bool = True
    #: The store's own domain table is the authority on which domains exist:
    #: writes check it inside their transaction.
    managed: bool = False
    #: Cluster stores: the host this context's domids belong to.
    host: str | None = None
    #: How long the change feed keeps changes; None: as the store has it.
    retention: Retention | None = None


class HeldLock(Protocol):
    """A per-domain lock that is held until ``release``."""

    def release(self) -> None: ...


class DomainTable(ABC):
    """The managed domains' table, kept in the store beside the items."""

    @abstractmethod
    def add(self, domid: int | None, uuid: str, name: str | None) -> Domain:
        """Insert a domain; ``domid=None`` takes the lowest free domid >= 1.

        Raises DomainExists when the domid or the name is taken.
        """

    @abstractmethod
    def remove(self, incarnation: Incarnation) -> int:
        """Delete the domain and all its items in one transaction; how many items went."""

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


class ManagedOps(ABC):
    """Optional fast path for the managed source: take the domain's lock, check
    the domain in the store's own table and act, in as few round trips as the
    store can (one, for a database server). Each raises DomainNotFound when
    the domid names no managed domain. Used only when the context does not
    already hold the domain's lock."""

    @abstractmethod
    def get(self, domid: int, userid: str, timeout: float) -> bytes | None: ...

    @abstractmethod
    def put(self, domid: int, userid: str, data: bytes, timeout: float) -> None: ...

    @abstractmethod
    def delete(self, domid: int, userid: str, timeout: float) -> bool: ...


class Store(ABC):
    """Items keyed by (incarnation, userid), with a per-domain lock."""

    #: The URL the store was opened with, safe to print (no password).
    url: str
    #: True when the lock is keyed by (domid, uuid) rather than by domid alone,
    #: so the contract layer must look the incarnation up before locking.
    lock_needs_uuid: bool = False

    @abstractmethod
    def lock(self, domid: int, uuid: str | None, timeout: float) -> HeldLock:
        """Take the domain's lock, shared with every process using this store.

        Waits at most *timeout* seconds, then raises LockTimeout.
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
    def drop(self, incarnations: Collection[Incarnation]) -> int:
        """Delete every item of these incarnations at once; how many went."""

    @abstractmethod
    def incarnations(self) -> set[Incarnation]:
        """Every incarnation that has at least one item."""

    def dead(self, live: Callable[[], set[Incarnation]]) -> list[Incarnation]:
        """The incarnations with items that *live* does not list, sorted. *live*
        is called after the store is read: an incarnation that had ended by
        then cannot come back, so none of these is alive."""
        stored = self.incarnations()
        return sorted(stored - live())

    @abstractmethod
    def domain_table(self) -> DomainTable:
        """The managed domain table kept in this store."""

    def managed_ops(self) -> ManagedOps | None:
        """The fused calls for the managed source, if this store has them."""
        return None

    def items_everywhere(self) -> Sequence[Item]:
        """Every item of every host (cluster stores); others: ``items(None)``."""
        return self.items(None)

    def migrate(self, incarnation: Incarnation, host: str | None, domid: int) -> int:
        """Move an incarnation's items (and managed domain) to (host, domid) in one
        transaction; how many items moved. Stores without hosts refuse."""
        raise NotManaged(f"{type(self).__name__} has no hosts to migrate between", store=self.url)

    def leftovers(self, dry_run: bool) -> list[str]:
        """Remove (or only list) debris a crash can leave: temp files, stale locks."""
        return []

    def check_reap(self, source: str) -> None:
        """Raise ReapRefused if reaping with the domain source *source* is unsafe."""

    @abstractmethod
    def close(self) -> None:
        """Release the store's connections and files."""
