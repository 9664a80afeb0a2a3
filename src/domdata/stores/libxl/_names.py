"""libxl's file names in the store's directory: building, parsing, the URL.

Pure functions and constants, no I/O: what each file is called (see the
package's docstring for the layout) and how the store opens it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from ..._errors import InvalidURL
from ..._types import Incarnation
from .._url import local_path

LOCK_USERID = "domain-userdata-lock"
RECORD_SUFFIX = "domdata-domain"
RECORD = f".{RECORD_SUFFIX}"
#: ``domdata-domid.<domid>``: a symbolic link naming that domid's record (read, never followed).
INDEX_PREFIX = "domdata-domid."
#: The domain source that governs the directory, one line of text.
SOURCE_FILE = "domdata-source"
#: The userid libxl writes for every domain it creates (libxl_domain_config as JSON).
LIBXL_JSON = "libxl-json"
#: The userid libvirt's libxl driver writes for every domain it creates (its XML).
LIBVIRT_XML = "libvirt-xml"

#: ``<domid>.<uuid>`` of a userdata file name: ``userdata-<kind>.<domid>.<uuid>.<rest>``.
_KEY = re.compile(r"(0|[1-9][0-9]{0,9})\.([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
_KINDS = frozenset("abcdefghijklmnopqrstuvwxyz")
_MAX_DOMID = 2**32 - 1
READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def dir_of(url: str) -> str:
    """``libxl:///var/lib/xen`` -> ``/var/lib/xen``; ``libxl:rel/dir`` -> ``rel/dir``."""
    path = local_path(url, "libxl:///absolute/dir (libxl:///var/lib/xen)")
    if os.path.normpath(path) == "/":
        raise InvalidURL(
            "libxl:/// names the root directory: name the store's (libxl:///var/lib/xen)", store=url
        )
    return path


def item_name(kind: str, incarnation: Incarnation, userid: str) -> str:
    """The file name libxl gives *userid*'s file of this incarnation (kind d, n or l)."""
    return f"userdata-{kind}.{incarnation[0]}.{incarnation[1]}.{userid}"


def record_name(incarnation: Incarnation) -> str:
    """The file name of a managed domain's record."""
    return item_name("m", incarnation, RECORD_SUFFIX)


class Entry(NamedTuple):
    """One parsed file name of the directory."""

    name: str
    kind: str
    incarnation: Incarnation
    rest: str


def key_of(name: str) -> str:
    """``<domid>.<uuid>`` of a userdata file name, cut out without validating it:
    a cheap first sieve over a large directory; ``parse`` checks what it keeps."""
    return name[11 : name.find(".", 11) + 37]


def of_kind(kind: str, names: Iterable[str]) -> Iterator[str]:
    prefix = f"userdata-{kind}."
    return (name for name in names if name.startswith(prefix))


def is_temp(name: str) -> bool:
    kind = name[9:10]
    return kind == "n" or (kind == "m" and not name.endswith(RECORD))


def incarnation_of(key: str) -> Incarnation | None:
    """The incarnation a ``<domid>.<uuid>`` key names, or None if it is no valid key."""
    match = _KEY.fullmatch(key)
    if match is None or int(match[1]) > _MAX_DOMID:
        return None
    return Incarnation(int(match[1]), match[2])


def parse(names: Iterable[str]) -> list[Entry]:
    """The userdata files among *names*, ``userdata-<a-z>.<domid>.<uuid>.<rest>``
    (rest not empty), parsed; anything else is skipped.

    Sliced rather than matched whole: a directory of 10,000 domains holds
    three names per incarnation, and each key is validated once."""
    entries = []
    known: dict[str, Incarnation | None] = {}
    for name in names:
        if name[9:10] not in _KINDS or name[10:11] != "." or not name.startswith("userdata-"):
            continue
        end = name.find(".", 11) + 37  # the dot after the uuid, if the key is well formed
        if name[end : end + 1] != "." or len(name) == end + 1:
            continue
        key = name[11:end]
        incarnation = known.get(key)
        if incarnation is None and key not in known:
            incarnation = known[key] = incarnation_of(key)
        if incarnation is not None:
            entries.append(Entry(name, name[9], incarnation, name[end + 1 :]))
    return entries


def incarnations_of(kind: str, names: Iterable[str]) -> set[Incarnation]:
    """The incarnations that have a file of *kind* among *names* (what
    ``parse`` would find, without building an entry per file)."""
    prefix = f"userdata-{kind}."
    keys = set()
    for name in names:
        if name.startswith(prefix):
            end = name.find(".", 11) + 37
            if name[end : end + 1] == "." and len(name) > end + 1:
                keys.add(name[11:end])
    return {incarnation for incarnation in map(incarnation_of, keys) if incarnation is not None}
