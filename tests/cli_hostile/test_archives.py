"""``domdata import`` of a malformed archive: the manifest's every field is
checked, a truncated compressed archive says so; nothing is imported."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import tarfile
from collections.abc import Callable

import pytest

from tests._faults import assert_one_line_error, domdata

# -- malformed archives ------------------------------------------------------------


def _archive(manifest: bytes, members: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in [*(members or {}).items(), ("manifest.json", manifest)]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


ITEM = {"domid": 1, "uuid": "u", "userid": "xl", "size": 1, "member": "m"}


def _manifest(**fields: object) -> bytes:
    base: dict[str, object] = {"format": "domdata-export", "version": 1, "items": [ITEM]}
    return json.dumps({**base, **fields}).encode()


MALFORMED = {
    "deep": b"[" * 100000 + b"]" * 100000,
    "deep-object": b'{"format": "domdata-export", "version": 1, "x": ' + b"[" * 100000 + b"]" * 100000 + b"}",
    "domains-int": _manifest(domains=5),
    "domains-no-domid": _manifest(domains=[{"x": 1}]),
    "domains-list-domid": _manifest(domains=[{"domid": [1], "uuid": "u"}]),
    "domains-str": _manifest(domains="abc"),
    "domain-name-int": _manifest(domains=[{"domid": 1, "uuid": "u", "name": 5}]),
    "item-domid-bool": _manifest(items=[{**ITEM, "domid": True}]),
    "item-size-negative": _manifest(items=[{**ITEM, "size": -1}]),
    "items-dict": _manifest(items={"a": 1}),
}


@pytest.mark.parametrize("manifest", MALFORMED.values(), ids=MALFORMED.keys())
def test_import_refuses_a_malformed_manifest(store: str, dom: str, manifest: bytes) -> None:
    result = domdata(store, "import", dom, "--from", "1", stdin=_archive(manifest, {"m": b"x"}))
    assert result.returncode == 1, result.stderr
    assert_one_line_error(result.stderr, "not a domdata archive", "nothing imported")
    assert domdata(store, "retrieve", dom, "xl").stdout == b""


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress], ids=["gz", "bz2", "xz"])
def test_import_says_a_truncated_compressed_archive_is_truncated(
    store: str, dom: str, compress: Callable[[bytes], bytes]
) -> None:
    archive = compress(_archive(_manifest(), {"m": os.urandom(50_000)}))
    truncated = archive[: len(archive) // 2]
    result = domdata(store, "import", dom, stdin=truncated)
    assert result.returncode == 1, result.stderr
    line = assert_one_line_error(result.stderr, "not a domdata archive", "nothing imported")
    assert "truncated or corrupt" in line


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress], ids=["gz", "bz2", "xz"])
def test_import_reads_a_whole_compressed_archive(
    store: str, dom: str, compress: Callable[[bytes], bytes]
) -> None:
    exported = domdata(store, "export", dom)
    assert exported.returncode == 0, exported.stderr
    assert domdata(store, "unlink", dom, "k").returncode == 0
    result = domdata(store, "import", dom, stdin=compress(exported.stdout))
    assert result.returncode == 0, result.stderr
    assert domdata(store, "retrieve", dom, "k").stdout == b"value"


@pytest.mark.parametrize(
    ("archive", "why"),
    [
        (b"", "empty file"),
        (gzip.compress(b"x" * 1000)[:10] + b"garbage" * 10, "truncated or corrupt"),
        (_archive(_manifest(), {"m": b"x"})[:700], "truncated or corrupt"),
        (_archive(_manifest(), {"m": b"x"})[:1024], "no manifest.json"),  # cut between members
    ],
    ids=["empty", "bad-gzip", "cut-plain-tar", "plain-tar-cut-between-members"],
)
def test_import_names_what_is_wrong_with_an_archive(store: str, dom: str, archive: bytes, why: str) -> None:
    result = domdata(store, "import", dom, stdin=archive)
    assert result.returncode == 1, result.stderr
    assert_one_line_error(result.stderr, "not a domdata archive", why, "nothing imported")
