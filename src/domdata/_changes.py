"""The change feed (DESIGN section 7): what a change is, and what a store with
a feed offers the contract layer.

Every write to an item gets a revision, an integer growing in commit order;
``Context.changes`` reads them and, with ``follow``, waits for new ones. A
store offers the feed by being a ``ChangeFeed`` (a capability the context asks
for by ``isinstance``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from ._errors import ChangesLost
from ._types import Incarnation, Item

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Literal, NamedTuple, Self

    #: Created or replaced (``size`` is the new size), unlinked (or stored empty),
    #: removed by ``destroy``, by ``reap`` or the watch daemon, moved away by ``migrate``.
    ChangeOp = Literal["store", "delete", "destroy", "reap", "migrate"]
    #: Why a store drops every item of incarnations: its ``drop`` records this op.
    Removal = Literal["destroy", "reap"]
else:
    from ._named import NamedTuple


class Change(NamedTuple):
    """One change to one item. The feed carries no data: ``retrieve`` it."""

    rev: int
    op: ChangeOp
    host: str | None
    domid: int
    uuid: str
    userid: str
    #: The new size for ``store``; None for removals.
    size: int | None


class _RetentionFields(NamedTuple):
    changes: int
    seconds: float


class Retention(_RetentionFields):
    """How long a store keeps changes: a change goes only once it is older than
    *seconds* AND more than *changes* newer changes exist."""

    __slots__ = ()

    def __new__(cls, changes: int = 100_000, seconds: float = 24 * 3600.0) -> Self:
        if type(changes) is not int or changes < 1:
            raise ValueError(
                f"Retention.changes is an int >= 1 (the newest change is always kept), not {changes!r}"
            )
        if not isinstance(seconds, int | float) or not seconds >= 0:
            raise ValueError(f"Retention.seconds is a number >= 0, not {seconds!r}")
        return super().__new__(cls, changes, seconds)


class Listing(list[Item]):
    """The items ``list`` returns, with ``rev``: the revision they reflect.

    ``changes(since=listing.rev)`` then gives every later change, none twice.
    """

    rev: int

    def __init__(self, items: Iterable[Item], rev: int) -> None:
        super().__init__(items)
        self.rev = rev


def changes_lost(url: str, since: int, oldest: int, newest: int) -> ChangesLost:
    """The ChangesLost for a *since* outside what the store can give."""
    if since > newest:
        what = f"revision {since} is newer than this store's newest ({newest}): it comes from another store"
    else:
        what = f"the changes after revision {since} are no longer retained (oldest available: {oldest})"
    return ChangesLost(
        what + "; list again, then follow from the list's revision", since=since, oldest=oldest, store=url
    )


class ChangeFeed(ABC):
    """A store that records changes: the capability behind ``Context.changes``."""

    @abstractmethod
    def changes(self, domid: int | None, since: int | None, follow: bool) -> Iterator[Change]:
        """The changes after *since* (all retained ones if None), in revision order;
        with *follow*, then wait for new ones. Raises ChangesLost at once when
        *since* is not retained."""

    @abstractmethod
    def listing(self, incarnation: Incarnation | None, all_hosts: bool) -> Listing:
        """``items`` (or every host's items) and, read in the same snapshot, the
        revision they reflect."""
