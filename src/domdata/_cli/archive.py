"""The export archive: a plain tar file any tar reads.

One member per item, ``domain-<domid>-<uuid>/<userid>`` (``%``, ``.`` and
``..`` written as ``%25``, ``%2E``, ``%2E%2E``), holding the item's bytes
as they are, and a last member ``manifest.json``::

    {"format": "domdata-export", "version": 1, "created": "2026-11-28T18:00:00Z",
     "store": "sqlite:///...", "domains": [{"domid": 1, "uuid": "...", "name": "web1"}],
     "items": [{"domid": 1, "uuid": "...", "userid": "xl", "size": 111, "member": "..."}]}

Reading checks the structure and each member's size against a limit before
reading it: a bad or oversized archive is refused before anything is stored.
"""

from __future__ import annotations

import importlib
import io
import json
import lzma
import tarfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import domdata

FORMAT = "domdata-export"
VERSION = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True, slots=True)
class Entry:
    """One item of an archive."""

    domid: int
    uuid: str
    userid: str
    data: bytes


def member_name(domid: int, uuid: str, userid: str) -> str:
    """Where an item goes in the archive: a path every tar extracts safely."""
    name = userid.replace("%", "%25")
    if name in (".", ".."):
        name = name.replace(".", "%2E")
    return f"domain-{domid}-{uuid}/{name}"


def _add(archive: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(mtime), 0o600
    archive.addfile(info, io.BytesIO(data))


@contextmanager
def writing(stream: IO[bytes], store: str) -> Iterator[Writer]:
    """A Writer onto *stream*; the manifest goes last, when the block ends."""
    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        writer = Writer(tar, store)
        yield writer
        _add(tar, MANIFEST, (json.dumps(writer.manifest, indent=2) + "\n").encode(), writer.now)


class Writer:
    """Writes items as they come (a tar stream: no seeking back)."""

    def __init__(self, tar: tarfile.TarFile, store: str) -> None:
        self._tar = tar
        self.now = time.time()
        self.manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.now)),
            "store": store,
            "domains": [],
            "items": [],
        }

    def domain(self, domain: domdata.Domain) -> None:
        self.manifest["domains"].append({"domid": domain.domid, "uuid": domain.uuid, "name": domain.name})

    def item(self, domid: int, uuid: str, userid: str, data: bytes) -> None:
        member = member_name(domid, uuid, userid)
        _add(self._tar, member, data, self.now)
        self.manifest["items"].append(
            {"domid": domid, "uuid": uuid, "userid": userid, "size": len(data), "member": member}
        )


def _refuse(what: str) -> domdata.Error:
    return domdata.Error(f"not a domdata archive: {what}")


#: How a compressed archive begins, and the module that reads it.
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ\x00": "lzma"}
#: Decompressing a cut or damaged stream fails with one of these (gzip's and bz2's
#: errors are OSErrors: told apart from the input's own by _Input).
_DAMAGED: tuple[type[Exception], ...] = (EOFError, OSError, zlib.error, lzma.LZMAError)


class _InputFailed(Exception):
    """Reading the archive's input failed with *error* (not the archive's fault)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


class _Input(io.RawIOBase):
    """The input, its first bytes put back once the kind of archive is known;
    a failure to read it is an _InputFailed, apart from the decompressor's own."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self._stream = stream
        self._head = self._read(6)  # the longest magic of _COMPRESSED

    def readable(self) -> bool:
        return True

    def _read(self, size: int) -> bytes:
        try:
            return self._stream.read(size) or b""
        except OSError as exc:
            raise _InputFailed(exc) from None

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            data, self._head = self._head[: len(view)], self._head[len(view) :]
        else:
            data = self._read(len(view))
        view[: len(data)] = data
        return len(data)

    def decompressed(self) -> IO[bytes]:
        """The tar stream: the input itself, or what its compression (gzip,
        bzip2, xz) holds; a cut compressed stream fails with EOFError."""
        buffered = io.BufferedReader(self)
        module = next((m for magic, m in _COMPRESSED.items() if self._head.startswith(magic)), None)
        if module is None:
            return buffered
        opened: IO[bytes] = importlib.import_module(module).open(buffered, "rb")
        return opened


def read(stream: IO[bytes], max_item_size: int) -> tuple[dict[str, Any], list[Entry]]:
    """The manifest and the items of an archive (plain, gzip, bzip2 or xz tar).

    DataTooLarge for a member over *max_item_size* (checked before reading it);
    domdata.Error for anything that is not a whole archive export wrote, and
    for an input that cannot be read.
    """
    members: dict[str, bytes] = {}
    manifest_data: bytes | None = None
    try:
        with tarfile.open(fileobj=_Input(stream).decompressed(), mode="r|") as archive:
            for info in archive:
                if not info.isfile():
                    if info.isdir():
                        continue
                    raise _refuse(f"{info.name} is not a regular file")
                if info.name == MANIFEST:
                    if info.size > 64 * 1024 * 1024:
                        raise _refuse("the manifest is too large")
                    manifest_data = _read_member(archive, info)
                    continue
                if info.size > max_item_size:
                    raise domdata.DataTooLarge(
                        f"{info.name}: {info.size} bytes is over the limit of {max_item_size} bytes per item"
                    )
                members[info.name] = _read_member(archive, info)
    except domdata.Error:
        raise
    except _InputFailed as failed:
        raise domdata.Error(f"cannot read the archive: {failed.error.strerror or failed.error}") from None
    except tarfile.ReadError as exc:
        if str(exc) == "unexpected end of data" or str(exc).startswith("zlib error"):
            raise _refuse(f"it is truncated or corrupt ({exc})") from None
        raise _refuse(str(exc)) from None
    except tarfile.TarError as exc:
        raise _refuse(str(exc)) from None
    except _DAMAGED as exc:
        raise _refuse(f"it is truncated or corrupt ({exc})") from None
    if manifest_data is None:
        raise _refuse(f"no {MANIFEST} (the last member: a truncated archive has none)")
    manifest = _manifest(manifest_data)
    entries = []
    for item in manifest["items"]:
        data = members.pop(item["member"], None)
        if data is None or len(data) != item["size"]:
            raise _refuse(f"{item['member']} is missing or not {item['size']} bytes")
        entries.append(Entry(item["domid"], item["uuid"], item["userid"], data))
    if members:
        raise _refuse(f"{sorted(members)[0]} is not in the manifest")
    return manifest, entries


def _read_member(archive: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    extracted = archive.extractfile(info)
    assert extracted is not None  # a regular file always has contents
    return extracted.read()


def _count(value: object, most: int | None = None) -> bool:
    """*value* is a whole number from 0 to *most* (JSON's true and false are none)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    return value >= 0 and (most is None or value <= most)


def _text(value: object) -> bool:
    return isinstance(value, str)


#: The fields of each item and each domain of a manifest, and what each must be.
_ITEM_FIELDS: dict[str, Callable[[object], bool]] = {
    "domid": lambda value: _count(value, domdata.MAX_DOMID),
    "uuid": _text,
    "userid": _text,
    "size": _count,
    "member": _text,
}
_DOMAIN_FIELDS: dict[str, Callable[[object], bool]] = {
    "domid": _ITEM_FIELDS["domid"],
    "uuid": _text,
    "name": lambda value: value is None or _text(value),
}


def _manifest(data: bytes) -> dict[str, Any]:
    """The manifest, every field the import uses checked for its type: a
    malformed one is refused here, never met later as a KeyError or TypeError.
    ``domains`` (what ``--from`` matches names against) may be absent."""
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise _refuse(f"{MANIFEST} is not JSON ({why})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _refuse(f"{MANIFEST} is not a {FORMAT} manifest")
    version = manifest.get("version")
    if not _count(version) or version != VERSION:
        raise _refuse(f"format version {version!r}; this domdata reads version {VERSION}")
    if not _all_of(manifest.get("items"), _ITEM_FIELDS):
        raise _refuse(f"{MANIFEST} lists items without domid, uuid, userid, size and member")
    if manifest.get("domains") is None:
        manifest["domains"] = []
    if not _all_of(manifest["domains"], _DOMAIN_FIELDS, optional={"name"}):
        raise _refuse(f"{MANIFEST} lists domains without domid, uuid and a name or null")
    return manifest


def _all_of(
    value: object,
    fields: dict[str, Callable[[object], bool]],
    *,
    optional: frozenset[str] | set[str] = frozenset(),
) -> bool:
    """*value* is a list of objects, each with *fields* (those in *optional* may be absent)."""
    return isinstance(value, list) and all(
        isinstance(entry, dict)
        and all(
            (name in entry or name in optional) and check(entry.get(name)) for name, check in fields.items()
        )
        for entry in value
    )
