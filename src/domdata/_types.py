"""Plain values: what a domain incarnation, a domain and an item are."""

from __future__ import annotations

from _thread import TIMEOUT_MAX

from ._errors import InvalidDomain, InvalidOption

TYPE_CHECKING = False
if TYPE_CHECKING:
    import uuid as _uuid
    from typing import NamedTuple
else:
    from ._named import NamedTuple

MAX_DOMID = 2**32 - 1
#: Default largest item a store accepts (DESIGN section 1).
DEFAULT_MAX_ITEM_SIZE = 16 * 1024 * 1024
#: The largest ``max_item_size`` (and ``--max-item-size``): what SQLite
#: (SQLITE_MAX_LENGTH) and PostgreSQL (bytea) hold.
MAX_ITEM_SIZE_CAP = 1_000_000_000
#: The longest ``lock_timeout`` (and ``--lock-timeout``): the longest wait threading allows.
MAX_LOCK_TIMEOUT: float = TIMEOUT_MAX


def check_max_item_size(value: object) -> int:
    """*value* if it is an int in 1..MAX_ITEM_SIZE_CAP, else InvalidOption."""
    if type(value) is not int:
        raise InvalidOption(f"max_item_size is an int in 1..{MAX_ITEM_SIZE_CAP}, not {type(value).__name__}")
    if not 1 <= value <= MAX_ITEM_SIZE_CAP:
        raise InvalidOption(f"max_item_size is an int in 1..{MAX_ITEM_SIZE_CAP} (bytes), not {value}")
    return value


def check_lock_timeout(value: object) -> float:
    """*value* if it is a finite number of seconds in 0..MAX_LOCK_TIMEOUT, else
    InvalidOption. Written so that nan fails (every comparison with it is false)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidOption(f"lock_timeout is a number of seconds, not {type(value).__name__}")
    if not 0 <= value <= MAX_LOCK_TIMEOUT:
        raise InvalidOption(f"lock_timeout is a number of seconds in 0..{MAX_LOCK_TIMEOUT:.0f}, not {value}")
    return value


def uuid_shaped(text: str) -> bool:
    """Whether *text* is written as a uuid is: five dash-separated groups of
    ASCII letters and digits, 30-40 characters. It is meant as a uuid, so a bad
    one is an error, never a domain name (names may not look so)."""
    groups = text.split("-")
    return (
        30 <= len(text) <= 40
        and len(groups) == 5
        and all(group.isascii() and group.isalnum() for group in groups)
    )


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


def parse_dom(text: str) -> int | _uuid.UUID | str:
    """DOM as people write it: ASCII digits are a domid, a uuid-shaped text is
    a uuid, anything else is a name. InvalidDomain for a domid outside
    0..2^32-1 (a negative one too: ``-1`` is no name) or a malformed uuid."""
    if text.isascii() and text.isdigit():
        return check_domid(int(text))
    if text[:1] == "-" and text[1:].isascii() and text[1:].isdigit():
        raise InvalidDomain(f"domid {text} is outside 0..{MAX_DOMID}")  # -0 too: written as no domid is
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
