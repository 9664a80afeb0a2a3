"""``-o FILE`` (export, retrieve): FILE is replaced by a whole, private file
or left as it was; never truncated by a command that then fails."""

from __future__ import annotations

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


def test_export_replaces_the_output_file_with_a_private_whole_archive(
    tmp_path: Path, store: str, dom: str
) -> None:
    target = tmp_path / "out.tar"
    target.write_bytes(OLD)
    target.chmod(0o644)
    result = domdata(store, "export", dom, "-o", str(target))
    assert result.returncode == 0, result.stderr
    with tarfile.open(target) as tar:
        assert sorted(tar.getnames())[-1] == "manifest.json"
    assert target.stat().st_mode & 0o777 == 0o600
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


def test_retrieve_replaces_the_output_file_privately(tmp_path: Path, store: str, dom: str) -> None:
    target = tmp_path / "out"
    target.write_bytes(OLD)
    target.chmod(0o644)
    assert domdata(store, "retrieve", dom, "k", "-o", str(target)).returncode == 0
    assert target.read_bytes() == b"value"
    assert target.stat().st_mode & 0o777 == 0o600
    assert leftovers(tmp_path, "out", "store") == []


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
