"""The exception tree: one root, one small class per way a call can fail.

Every message names the store, the domain and the userid involved, so a line
in a log says what was being done to what: one line, whatever the parts hold
(a newline or another control character is shown escaped).
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


class InvalidDomain(Error, ValueError):
    """A domid, uuid or domain name is malformed (out of range, not a uuid...)."""


class InvalidUserid(Error, ValueError):
    """The userid breaks one of the userid rules; the message names the rule."""


class InvalidData(Error, TypeError):
    """The data is not bytes, bytearray or memoryview (``str`` is never encoded)."""


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
    """The store cannot be reached or used (database down, directory missing...)."""


class SourceUnavailable(Error):
    """The domain source cannot be reached (libvirt down, bad URI...)."""


class CorruptItem(Error):
    """An item exists but cannot be valid (an empty libxl file: a torn write)."""


class NotManaged(Error):
    """Creating or destroying a domain needs the ``managed`` domain source."""


class ReapRefused(Error):
    """``reap`` would delete data of domains the source does not govern."""
