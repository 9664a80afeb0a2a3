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

_NAME = re.compile(
    r"userdata-([a-z])\.(0|[1-9][0-9]{0,9})\."
    r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.(.+)",
    re.DOTALL,
)
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
    a cheap first sieve over a large directory; ``_parse`` checks what it keeps."""
    return name[11 : name.find(".", 11) + 37]


def of_kind(kind: str, names: Iterable[str]) -> Iterator[str]:
    prefix = f"userdata-{kind}."
    return (name for name in names if name.startswith(prefix))


def is_temp(name: str) -> bool:
    kind = name[9:10]
    return kind == "n" or (kind == "m" and not name.endswith(RECORD))


def parse(names: Iterable[str]) -> list[Entry]:
    entries = []
    for name in names:
        match = _NAME.fullmatch(name)
        if match is not None and int(match[2]) <= _MAX_DOMID:
            entries.append(Entry(name, match[1], Incarnation(int(match[2]), match[3]), match[4]))
    return entries

