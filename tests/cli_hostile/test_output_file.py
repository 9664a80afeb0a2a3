"""``-o FILE`` (export, retrieve): FILE is replaced by a whole file or left
as it was; never truncated by a command that then fails. The replacement
keeps FILE's permission bits (and, for root, its owner); a new FILE is private."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

import domdata as library
from tests._faults import assert_one_line_error, created_domain, domdata, tmpfs
from tests.cli_hostile._shared import OUTPUT_FAILED, leftovers

OLD = b"the old contents, which must survive\n"


# -- an output file is replaced only by a whole one -----------------------------


def test_export_of_a_missing_domain_leaves_the_output_file_alone(
    tmp_path: Path, store: str, dom: str
) -> None:
    target = tmp_path / "out.tar"
    target.write_bytes(OLD)
    result = domdata(store, "export", "99", "-o", str(target))
    assert result.returncode == 3
    assert_one_line_error(result.stderr, "99")
    assert target.read_bytes() == OLD
    assert leftovers(tmp_path, "out.tar", "store") == []


def test_export_failing_midway_leaves_the_output_file_alone(tmp_path: Path) -> None:
    xen = tmp_path / "xen"
    xen.mkdir()
    store = f"libxl://{xen}"
    domid = created_domain(store)
    for userid in ("a", "b"):
        assert domdata(store, "store", str(domid), userid, stdin=b"data").returncode == 0
    (uuid,) = {i.uuid for i in library.open(store).list()}
    (xen / f"userdata-d.{domid}.{uuid}.b").write_bytes(b"")  # torn
    out = tmp_path / "out"
    out.mkdir()
    target = out / "backup.tar"
    target.write_bytes(OLD)
    result = domdata(store, "export", str(domid), "-o", str(target))
    assert result.returncode == 8
    assert_one_line_error(result.stderr, "empty")
    assert target.read_bytes() == OLD
    assert leftovers(out, "backup.tar") == []


def test_export_replaces_the_output_file_with_a_whole_archive_of_the_same_mode(
    tmp_path: Path, store: str, dom: str
) -> None:
    target = tmp_path / "out.tar"
    target.write_bytes(OLD)
    target.chmod(0o644)
    result = domdata(store, "export", dom, "-o", str(target))
    assert result.returncode == 0, result.stderr
    with tarfile.open(target) as tar:
        assert sorted(tar.getnames())[-1] == "manifest.json"
    assert target.stat().st_mode & 0o7777 == 0o644
    assert leftovers(tmp_path, "out.tar", "store") == []


def test_export_writes_into_a_fifo_or_device_rather_than_replacing_it(store: str, dom: str) -> None:
    result = domdata(store, "export", dom, "-o", "/dev/null")
    assert result.returncode == 0, result.stderr
    assert Path("/dev/null").is_char_device()


def test_retrieve_to_a_full_filesystem_leaves_the_output_file_alone(
    tmp_path: Path, store: str, dom: str
) -> None:
    big = b"x" * (3 * 1024 * 1024)
    assert domdata(store, "store", dom, "big", stdin=big).returncode == 0
    with tmpfs(tmp_path / "full", "2m") as full:
        target = full / "out"
        target.write_bytes(OLD)
        result = domdata(store, "retrieve", dom, "big", "-o", str(target))
        assert result.returncode == OUTPUT_FAILED
        assert_one_line_error(result.stderr, str(target))
        assert target.read_bytes() == OLD
        assert leftovers(full, "out") == []


def test_retrieve_from_a_missing_domain_leaves_the_output_file_alone(
    tmp_path: Path, store: str, dom: str
) -> None:
    target = tmp_path / "out"
    target.write_bytes(OLD)
    assert domdata(store, "retrieve", "99", "k", "-o", str(target)).returncode == 3
    assert target.read_bytes() == OLD


def test_retrieve_replaces_the_output_file_keeping_its_mode(tmp_path: Path, store: str, dom: str) -> None:
    target = tmp_path / "out"
    target.write_bytes(OLD)
    target.chmod(0o640)
    assert domdata(store, "retrieve", dom, "k", "-o", str(target)).returncode == 0
    assert target.read_bytes() == b"value"
    assert target.stat().st_mode & 0o7777 == 0o640
    assert leftovers(tmp_path, "out", "store") == []


#: The commands that take ``-o FILE``, on the domain of the ``dom`` fixture.
WRITERS = {"retrieve": ["retrieve", "{dom}", "k"], "export": ["export", "{dom}"]}


@pytest.mark.parametrize("command", WRITERS.values(), ids=WRITERS.keys())
def test_a_new_output_file_is_private(tmp_path: Path, store: str, dom: str, command: list[str]) -> None:
    target = tmp_path / "new"
    old = os.umask(0)  # the most permissive: the new file is private all the same
    try:
        result = domdata(store, *(a.format(dom=dom) for a in command), "-o", str(target))
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    assert target.stat().st_mode & 0o7777 == 0o600


@pytest.mark.parametrize("command", WRITERS.values(), ids=WRITERS.keys())
def test_a_replaced_output_file_keeps_its_owner_when_root_replaces_it(
    tmp_path: Path, store: str, dom: str, command: list[str]
) -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            raise AssertionError("CI runs as root")
        pytest.skip("giving a file to another user needs root")
    target = tmp_path / "theirs"
    target.write_bytes(OLD)
    os.chown(target, 65534, 65534)  # nobody, nogroup
    target.chmod(0o664)
    result = domdata(store, *(a.format(dom=dom) for a in command), "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() != OLD
    replaced = target.stat()
    assert (replaced.st_uid, replaced.st_gid) == (65534, 65534)
    assert replaced.st_mode & 0o7777 == 0o664
    assert leftovers(tmp_path, "theirs", "store") == []


def test_a_replaced_output_file_does_not_keep_set_id_bits(tmp_path: Path, store: str, dom: str) -> None:
    """Item data never becomes a set-user-ID (or set-group-ID) program."""
    target = tmp_path / "tool"
    target.write_bytes(OLD)
    target.chmod(0o6755)
    assert domdata(store, "retrieve", dom, "k", "-o", str(target)).returncode == 0
    assert target.read_bytes() == b"value"
    assert target.stat().st_mode & 0o7777 == 0o755


@pytest.mark.parametrize("command", [["retrieve", "1", "k"], ["export", "1"]])
def test_an_empty_output_file_name_is_an_error_and_writes_nothing(
    tmp_path: Path, store: str, dom: str, command: list[str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    result = domdata(store, *command, "-o", "", cwd=work)
    assert result.returncode == OUTPUT_FAILED
    assert_one_line_error(result.stderr, "cannot write ''")
    assert leftovers(tmp_path, "store", "work") == []
    assert leftovers(work) == []
