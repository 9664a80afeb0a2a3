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

import io
import json
import tarfile
import time
from collections.abc import Iterator
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


def read(stream: IO[bytes], max_item_size: int) -> tuple[dict[str, Any], list[Entry]]:
    """The manifest and the items of an archive (plain or compressed tar).

    DataTooLarge for a member over *max_item_size* (checked before reading it);
    domdata.Error for anything that is not an archive export wrote.
    """
    members: dict[str, bytes] = {}
    manifest_data: bytes | None = None
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as archive:
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
    except tarfile.TarError as exc:
        raise _refuse(str(exc)) from None
    except OSError as exc:  # not the archive's fault: its input's (a closed stdin...)
        raise domdata.Error(f"cannot read the archive: {exc.strerror or exc}") from None
    if manifest_data is None:
        raise _refuse(f"no {MANIFEST}")
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


def _manifest(data: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise _refuse(f"{MANIFEST} is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _refuse(f"{MANIFEST} is not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise _refuse(f"format version {manifest.get('version')!r}; this domdata reads version {VERSION}")
    items = manifest.get("items")
    fields = {"domid": int, "uuid": str, "userid": str, "size": int, "member": str}
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and all(isinstance(i.get(k), t) for k, t in fields.items()) for i in items
    ):
        raise _refuse(f"{MANIFEST} lists items without domid, uuid, userid, size and member")
    return manifest
