"""The exception tree: one root, one small class per way a call can fail.

Every message names the store, the domain and the userid involved, so a line
in a log says what was being done to what: one line, whatever the parts hold
(a newline or another control character is shown escaped)::

    Error                   the root: every error domdata raises
    ├── InvalidDomain       a domid, uuid or name is malformed          (ValueError)
    ├── InvalidUserid       a userid breaks a rule; names the rule      (ValueError)
    ├── InvalidData         data is not bytes-like (str is never encoded) (TypeError)
    ├── InvalidOption       an option of open() is out of range or of a wrong type (ValueError, TypeError)
    ├── DataTooLarge        data is over the store's per-item limit     (ValueError)
    ├── DomainNotFound      no live incarnation with that domid/uuid/name (LookupError)
    ├── DomainExists        a managed domain with that domid or name exists
    │   └── ItemsClash      migrate: the destination has items of those userids
    ├── LockTimeout         the domain's lock stayed held past the timeout (TimeoutError)
    ├── CorruptItem         an item exists but cannot be valid (an empty libxl file)
    ├── StoreUnavailable    the store cannot be reached or used
    │   ├── InvalidURL      the store URL is malformed or names no known kind of store
    │   └── LeftBehind      some files could not be removed; the others were
    ├── SourceUnavailable   the domain source cannot be reached or named
    ├── SourceMismatch      the store is governed by another source than the one named
    ├── NotManaged          create/destroy a domain needs the ``managed`` source
    ├── NotClustered        migrate needs a store with hosts (PostgreSQL)
    ├── ReapRefused         reap would delete data the source does not govern
    └── ChangesLost         the changes after a revision are no longer kept
"""

from __future__ import annotations


class Error(Exception):
    """Root of every error domdata raises."""

    def __init__(
        self,
        what: str,
        *,
        store: str | None = None,
        domain: object = None,
        userid: str | None = None,
    ) -> None:
        self.what = what
        self.store = store
        self.domain = domain
        self.userid = userid
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.store is not None:
            where.append(f"store {self.store}")
        if self.domain is not None:
            where.append(f"domain {self.domain}")
        if self.userid is not None:
            where.append(f"userid {self.userid!r}")
        return one_line(f"{', '.join(where)}: {self.what}" if where else self.what)


def one_line(text: str) -> str:
    """*text* with every character that is not printable (newlines, other line
    separators, control characters) escaped as Python writes it: ``\\n``, ``\\x00``."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class DomainNotFound(Error, LookupError):
    """The domid (or uuid, or name) names no live domain incarnation."""


class DomainExists(Error):
    """A managed domain with that domid or name already exists."""


class ItemsClash(DomainExists):
    """``migrate``: the destination incarnation already has items with the same
    userids; nothing was moved."""


class InvalidDomain(Error, ValueError):
    """A domid, uuid or domain name is malformed (out of range, not a uuid...)."""


class InvalidUserid(Error, ValueError):
    """The userid breaks one of the userid rules; the message names the rule."""


class InvalidData(Error, TypeError):
    """The data is not bytes, bytearray or memoryview (``str`` is never encoded)."""


class InvalidOption(Error, ValueError, TypeError):
    """An option of ``domdata.open`` (``lock_timeout``, ``max_item_size``,
    ``domains``, ``host``, ``changes_retention``) is out of its range or of a
    wrong type; nothing was opened. Both a ValueError and a TypeError."""


class DataTooLarge(Error, ValueError):
    """The data is larger than the store's per-item limit; nothing was written."""

    @classmethod
    def over(
        cls, limit: int, size: int | None = None, *, store: str | None, domain: object, userid: str | None
    ) -> DataTooLarge:
        """The error for data of *size* bytes, or of an unknown size over *limit*
        (a stream read up to one byte past the limit)."""
        what = f"{size} bytes is over" if size is not None else "the data is more than"
        return cls(f"{what} the limit of {limit} bytes per item", store=store, domain=domain, userid=userid)


class LockTimeout(Error, TimeoutError):
    """The domain's lock was held by someone else for longer than the timeout."""


class StoreUnavailable(Error):
    """The store cannot be reached or used (database down, directory missing,
    its context closed...)."""

    @classmethod
    def closed(cls, store: str | None) -> StoreUnavailable:
        """What every call on a closed context raises, and every call on what it
        handed out before (its domain source, a change feed)."""
        return cls("this context is closed: open a new one", store=store)


class InvalidURL(StoreUnavailable):
    """The store URL is malformed, or its scheme names no kind of store domdata has."""


class LeftBehind(StoreUnavailable):
    """Removing the files of dead incarnations (libxl) failed for some of them;
    every other file was removed. ``removed`` counts the items that went,
    ``left`` lists ``(incarnation, path, reason)`` of what stayed."""

    def __init__(
        self, removed: int, left: list[tuple[object, str, str]], *, store: str | None = None
    ) -> None:
        self.removed = removed
        self.left = left
        incarnation, path, reason = left[0]
        more = f" (and {len(left) - 1} more)" if len(left) > 1 else ""
        super().__init__(
            f"could not remove {path} of incarnation {incarnation}: {reason}{more}; everything else went",
            store=store,
        )


class SourceUnavailable(Error):
    """The domain source cannot be reached (libvirt down, bad URI...)."""


class SourceMismatch(Error):
    """The store is governed by another domain source than the one named
    (DESIGN section 3); nothing was read or written. ``domdata bind`` changes it."""


class CorruptItem(Error):
    """An item exists but cannot be valid (an empty libxl file: a torn write)."""


class NotManaged(Error):
    """Creating or destroying a domain needs the ``managed`` domain source."""


class NotClustered(Error):
    """``migrate`` moves data between hosts: only a cluster store (PostgreSQL) has them."""


class ReapRefused(Error):
    """``reap`` would delete data of domains the source does not govern."""


class ChangesLost(Error):
    """The changes after ``since`` are no longer retained (or never were in this
    store): re-list, then follow from the listing's revision. ``oldest`` is the
    oldest revision the store can still give (0 when it has none)."""

    def __init__(self, what: str, *, since: int, oldest: int, store: str | None = None) -> None:
        self.since = since
        self.oldest = oldest
        super().__init__(what, store=store)
