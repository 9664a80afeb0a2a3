"""Plain values: what a domain incarnation, a domain and an item are.

No ``from __future__ import annotations`` here: typing.NamedTuple compiles
each field's annotation given as a string, which costs every command's
start-up more than the rest of this module.
"""

import enum
import re
from typing import TYPE_CHECKING, NamedTuple

from ._errors import InvalidDomain

if TYPE_CHECKING:
    import uuid as _uuid

MAX_DOMID = 2**32 - 1
#: Default largest item a store accepts (DESIGN section 1).
DEFAULT_MAX_ITEM_SIZE = 16 * 1024 * 1024


# Five dash-separated alphanumeric groups, about a uuid's length: meant as a
# uuid, so a bad one is an error, never a domain name (names may not look so).
_UUID_SHAPED = re.compile(r"[0-9A-Za-z]+(?:-[0-9A-Za-z]+){4}")


def uuid_shaped(text: str) -> bool:
    """Whether *text* is written as a uuid is (five dash-separated groups, 30-40 characters)."""
    return 30 <= len(text) <= 40 and _UUID_SHAPED.fullmatch(text) is not None


class XenView(enum.Enum):
    """How much of the local Xen hypervisor's domains a domain source sees."""

    #: None of them (managed domains, KVM, a remote host...).
    NONE = "none"
    #: Those libvirt's libxl driver created, which carry a ``libvirt-xml`` item.
    LIBVIRT = "libvirt"
    #: Every one, whoever started it (``xl create`` included).
    ALL = "all"


class Incarnation(NamedTuple):
    """One life of a domain: ``(domid, uuid)``. A reboot is a new incarnation."""

    domid: int
    uuid: str

    def __str__(self) -> str:
        return f"{self.domid} ({self.uuid})"


class Domain(NamedTuple):
    """A live domain as its source describes it."""

    domid: int
    uuid: str
    name: str | None = None

    @property
    def incarnation(self) -> Incarnation:
        return Incarnation(self.domid, self.uuid)


class Item(NamedTuple):
    """One stored item: whose it is and how many bytes it holds."""

    domid: int
    uuid: str
    userid: str
    size: int
    #: The host the incarnation runs on, for cluster stores; None elsewhere.
    host: str | None = None


def parse_dom(text: str) -> "int | _uuid.UUID | str":
    """DOM as people write it: ASCII digits are a domid, a uuid-shaped text is
    a uuid, anything else is a name. InvalidDomain for a domid outside
    0..2^32-1 or a malformed uuid."""
    if text.isascii() and text.isdigit():
        return check_domid(int(text))
    if uuid_shaped(text):
        import uuid as _uuid  # only for a uuid: it imports platform

        return _uuid.UUID(canonical_uuid(text))
    return text


def check_domid(domid: object) -> int:
    """Return *domid* if it is an unsigned 32-bit integer, else raise InvalidDomain."""
    if type(domid) is int and 0 <= domid <= MAX_DOMID:
        return domid
    if not isinstance(domid, int) or isinstance(domid, bool):
        raise InvalidDomain(f"a domid is an int, not {type(domid).__name__}")
    raise InvalidDomain(f"domid {domid} is outside 0..{MAX_DOMID}")


def canonical_uuid(text: object) -> str:
    """Return *text* as a canonical lower-case 8-4-4-4-12 uuid, or raise InvalidDomain."""
    import uuid as _uuid  # only for a uuid: it imports platform

    if isinstance(text, _uuid.UUID):
        return str(text)
    if not isinstance(text, str):
        raise InvalidDomain(f"a uuid is a str, not {type(text).__name__}")
    try:
        value = _uuid.UUID(text)
    except ValueError:
        raise InvalidDomain(f"{text!r} is not a uuid (8-4-4-4-12 hexadecimal digits)") from None
    canonical = str(value)
    if text.lower() != canonical:
        raise InvalidDomain(f"{text!r} is not a uuid in 8-4-4-4-12 form")
    return canonical
