"""Userid rules (DESIGN section 1): short, printable, safe as a file name and a glob."""

from __future__ import annotations

from ._errors import InvalidUserid

MAX_USERID_LENGTH = 64
LOCK_USERID = "domain-userdata-lock"
_GLOB_CHARACTERS = frozenset("*?[]\\")
#: What a userid is made of: printable ASCII but space, '/' and glob's characters.
_ALLOWED = frozenset(map(chr, range(0x21, 0x7F))) - _GLOB_CHARACTERS - {"/"}
_valid_cache: set[str] = set()


def _broken_rule(userid: str) -> str:
    if not userid:
        return "a userid must not be empty"
    if len(userid) > MAX_USERID_LENGTH:
        return f"a userid has at most {MAX_USERID_LENGTH} characters, this one has {len(userid)}"
    for ch in userid:
        if ch == "/":
            return "a userid must not contain '/' (it would leave the store's directory)"
        if ch in _GLOB_CHARACTERS:
            return f"a userid must not contain {ch!r} (libxl enumerates items with glob(3))"
        if not "\x21" <= ch <= "\x7e":
            return f"a userid is printable ASCII without spaces (0x21..0x7E); {ch!r} is not"
    return f"{LOCK_USERID!r} is reserved for libxl's lock file"


def _valid(text: str) -> bool:
    return 0 < len(text) <= MAX_USERID_LENGTH and _ALLOWED.issuperset(text) and text != LOCK_USERID


def is_userid(text: str) -> bool:
    """Whether *text* is a valid userid (a file name in a libxl directory may not be)."""
    return _valid(text)


def check_userid(userid: object) -> str:
    """Return *userid* if it is valid, else raise InvalidUserid naming the broken rule."""
    if type(userid) is str and userid in _valid_cache:  # str first: a list is not hashable
        return userid
    if not isinstance(userid, str):
        raise InvalidUserid(f"a userid is a str, not {type(userid).__name__}")
    if not _valid(userid):
        raise InvalidUserid(_broken_rule(userid), userid=userid)
    if len(_valid_cache) < 4096:
        _valid_cache.add(userid)
    return userid
