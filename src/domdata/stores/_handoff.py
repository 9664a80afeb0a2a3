"""What a store does to hand a held domain lock to child processes (DESIGN section 8).

The proof of a hand-off is a handle the child inherits, never a claim: a
descriptor whose open file description holds the lock (SQLite's range lock,
libxl's flock), or a socket whose other end a keeper process holds while its
database session holds the lock (PostgreSQL). The lock lives as long as any
process holds the handle, so it outlives the process that took it, and no
process ever unlocks through an inherited handle. A child proves the handle
against its own store (the same file, the same database and host), so the
spelling of the store's URL does not matter.
"""

from __future__ import annotations

from abc import abstractmethod

from .base import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    from .._types import Incarnation
    from .base import HeldLock

    class AdoptedLock(Protocol):
        """A domain lock held through a handle that child processes inherit."""

        #: The descriptor a child inherits (``pass_fds``).
        fd: int
        #: The store's own lock calls (its one-step calls included) find this lock
        #: held and take it at once, re-checking the domain as usual; otherwise the
        #: contract keeps the domain as held and re-checks it at each call.
        shared: bool

        def check(self) -> None:
            """Raise StoreUnavailable if the lock is no longer held through the handle."""

    class HandedLock(AdoptedLock, HeldLock, Protocol):
        """A domain lock on a handle of its own, for child processes to inherit.

        ``release`` and ``discard`` close this process's copy of the handle: the
        lock stays held while a child still holds its copy.
        """


class HandsOff(Store):
    """A store whose domain lock can be handed to child processes."""

    @abstractmethod
    def hand_off(self, domid: int, uuid: str | None, timeout: float) -> HandedLock:
        """Take the domain's lock (as ``lock``) on a handle of its own, that
        lives as long as any process holds it."""

    @abstractmethod
    def adopt(self, fd: int, incarnation: Incarnation) -> AdoptedLock | None:
        """The incarnation's lock, held through the inherited descriptor *fd*;
        None unless *fd* proves it (the handle of this very store's lock,
        holding it). Never raises for a bad descriptor."""
