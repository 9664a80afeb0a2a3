"""The registry of known userids (DESIGN section 5): who owns each, what its data
is, and how to show it to a person. Never enforced; it helps people debugging,
as the list in libxl.h does.

Other packages add entries through the entry-point group ``domdata.userids``;
each entry point names a :class:`Userid` or an iterable of them::

    [project.entry-points."domdata.userids"]
    backup = "org_example_backup:USERIDS"

A plugin that cannot be loaded, or that yields anything but Userids with valid
userids, is skipped whole with a one-line warning (logger ``domdata.registry``)
naming it: a broken package never stops ``show`` or ``registry``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from ._errors import InvalidUserid, one_line
from ._userid import check_userid

ENTRY_POINT_GROUP = "domdata.userids"
_log = logging.getLogger(__name__)


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


def _load(entry: EntryPoint) -> list[Userid]:
    """The plugin's Userids; ValueError saying why if it is broken."""
    try:
        loaded = entry.load()
        found = [loaded] if isinstance(loaded, Userid) else list(loaded)
    except Exception as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    for value in found:
        if not isinstance(value, Userid):
            raise ValueError(f"{type(value).__name__} {value!r:.60} is not a domdata.registry.Userid")
        if not all(isinstance(text, str) for text in (value.owner, value.format, value.description)):
            raise ValueError(f"{value.userid!r}: owner, format and description are str")
        if value.decoder is not None and not callable(value.decoder):
            raise ValueError(f"{value.userid!r}: its decoder is not callable")
        try:
            check_userid(value.userid)
        except InvalidUserid as exc:
            raise ValueError(f"{value.userid!r:.80} is not a valid userid: {exc.what}") from exc
    return found


def _plugins() -> Iterable[Userid]:
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            yield from _load(entry)
        except ValueError as exc:
            _log.warning(one_line(f"domdata: userid plugin {entry.name!r} ({entry.value}) skipped: {exc}"))


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
            return f"# not valid {entry.format}: {one_line(str(exc))}\n{hexdump(data)}"
        except RecursionError:
            note = f"# nested too deeply to show as {entry.format}"
        except Exception as exc:  # a plugin's decoder: never let it stop show
            note = f"# the decoder of {entry.format} failed ({type(exc).__name__})"
        return f"{one_line(note)}: shown undecoded\n{_undecoded(data)}"
    return _undecoded(data)


def _undecoded(data: bytes) -> str:
    """UTF-8 text if the data is that, else a hex dump."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return hexdump(data)
    return text if all(c.isprintable() or c in "\n\r\t" for c in text) else hexdump(data)
