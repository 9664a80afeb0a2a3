"""The registry of known userids (DESIGN section 5): who owns each, what its data
is, and how to show it to a person. Never enforced; it helps people debugging,
as the list in libxl.h does.

Other packages add entries through the entry-point group ``domdata.userids``;
each entry point names a :class:`Userid` or an iterable of them::

    [project.entry-points."domdata.userids"]
    backup = "org_example_backup:USERIDS"
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "domdata.userids"


@dataclass(frozen=True, slots=True)
class Userid:
    """One registered userid."""

    userid: str
    owner: str
    format: str
    description: str
    #: Renders the data for a person; raises ValueError if the data is not in ``format``.
    decoder: Callable[[bytes], str] | None = None


def decode_text(data: bytes) -> str:
    """UTF-8 text, as it is (an xl config file)."""
    return data.decode("utf-8")


def decode_json(data: bytes) -> str:
    """JSON (libxl's is NUL-terminated), indented."""
    return json.dumps(json.loads(data.removesuffix(b"\0")), indent=2, ensure_ascii=False)


def decode_xml(data: bytes) -> str:
    """XML, indented."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from exc
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode")


def hexdump(data: bytes) -> str:
    """Offset, 16 bytes in hex, and the printable ones: for data of unknown format."""
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{offset:08x}  {chunk.hex(' '):<47}  {text}")
    return "\n".join(lines)


BUILTIN: tuple[Userid, ...] = (
    Userid(
        "xl",
        "xl (Xen)",
        "xl domain config (text, Unix line endings)",
        "The domain's config file in xl format, kept by xl for config-update and reboot.",
        decode_text,
    ),
    Userid(
        "libvirt-xml",
        "libvirt",
        "libvirt domain XML",
        "The domain's config in libvirt XML, kept by libvirt's libxl driver.",
        decode_xml,
    ),
    Userid(
        "libxl-json",
        "libxl",
        "JSON, NUL-terminated",
        "libxl's own libxl_domain_config; written by libxl itself: applications only read it.",
        decode_json,
    ),
    Userid(
        "domain-userdata-lock",
        "libxl",
        "none (reserved)",
        "The name of libxl's per-domain lock file; it can never be stored.",
    ),
)


def _plugins() -> Iterable[Userid]:
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        loaded = entry.load()
        yield from [loaded] if isinstance(loaded, Userid) else loaded


def registry() -> dict[str, Userid]:
    """Every known userid: the built-in ones, then those of installed packages."""
    known = {entry.userid: entry for entry in BUILTIN}
    for entry in _plugins():
        known.setdefault(entry.userid, entry)
    return known


def render(userid: str, data: bytes, known: dict[str, Userid] | None = None) -> str:
    """The data as a person should see it: through the userid's decoder, else
    as UTF-8 text if it is that, else as a hex dump."""
    entry = (registry() if known is None else known).get(userid)
    if entry is not None and entry.decoder is not None:
        try:
            return entry.decoder(data)
        except ValueError as exc:
            return f"# not valid {entry.format}: {exc}\n{hexdump(data)}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return hexdump(data)
    return text if all(c.isprintable() or c in "\n\r\t" for c in text) else hexdump(data)
