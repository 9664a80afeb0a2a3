"""Issue 10, lost or cut output: ``retrieve`` writes the whole item or fails with
its own status (14), one line; a reader that went away ends quietly (141).
Real processes writing to a full tmpfs, /dev/full, a closed stdout and a pipe."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests._faults import assert_one_line_error, created_domain, domdata, environment, tmpfs

#: The documented statuses (README, "Exit statuses").
OUTPUT_FAILED, BROKEN_PIPE = 14, 141
BIG = bytes(range(256)) * (3 * 1024 * 1024 // 256)  # 3 MiB


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'domdata.db'}"


@pytest.fixture
def big(store: str) -> str:
    """A domain holding the 3 MiB item ``big``; its domid."""
    domid = str(created_domain(store))
    assert domdata(store, "store", domid, "big", stdin=BIG).returncode == 0
    return domid


def test_stdout_on_a_full_filesystem_is_an_error_not_a_cut(tmp_path: Path, store: str, big: str) -> None:
    with tmpfs(tmp_path / "full", "2m") as full:
        target = full / "out"
        with target.open("wb") as out:
            result = domdata(store, "retrieve", big, "big", stdout=out)
        assert result.returncode == OUTPUT_FAILED
        assert_one_line_error(result.stderr, "stdout")
        assert target.stat().st_size < len(BIG)


def test_output_file_on_a_full_filesystem_is_an_error(tmp_path: Path, store: str, big: str) -> None:
    with tmpfs(tmp_path / "full", "2m") as full:
        result = domdata(store, "retrieve", big, "big", "-o", str(full / "out"))
        assert result.returncode == OUTPUT_FAILED
        assert_one_line_error(result.stderr, str(full / "out"))


def test_stdout_on_dev_full_is_an_error(store: str, big: str) -> None:
    with open("/dev/full", "wb") as full:
        result = domdata(store, "retrieve", big, "big", stdout=full)
    assert result.returncode == OUTPUT_FAILED
    assert_one_line_error(result.stderr, "stdout")


def test_a_closed_stdout_is_an_error_and_the_store_is_untouched(store: str, big: str) -> None:
    result = subprocess.run(
        ["sh", "-c", f"exec domdata retrieve {big} big >&-"], env=environment(store), capture_output=True
    )
    assert result.returncode == OUTPUT_FAILED
    assert_one_line_error(result.stderr, "stdout")
    assert domdata(store, "retrieve", big, "big").stdout == BIG


def test_a_reader_that_goes_away_ends_quietly(store: str, big: str) -> None:
    reader = subprocess.Popen(
        ["domdata", "retrieve", big, "big"],
        env=environment(store),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None
    assert reader.stderr is not None
    assert reader.stdout.read(10) == BIG[:10]
    reader.stdout.close()
    assert reader.wait(timeout=60) == BROKEN_PIPE
    assert reader.stderr.read() == b""


def test_an_output_file_that_cannot_be_opened_is_an_error(tmp_path: Path, store: str, big: str) -> None:
    target = tmp_path / "nonexistent" / "f"
    result = domdata(store, "retrieve", big, "big", "-o", str(target))
    assert result.returncode == OUTPUT_FAILED
    assert_one_line_error(result.stderr, str(target))


def test_a_failed_retrieve_creates_no_output_file(tmp_path: Path, store: str, big: str) -> None:
    target = tmp_path / "out"
    result = domdata(store, "retrieve", "77", "big", "-o", str(target))
    assert result.returncode == 3
    assert not target.exists()


def test_an_output_file_gets_the_whole_item_and_is_private(tmp_path: Path, store: str, big: str) -> None:
    target = tmp_path / "out"
    assert domdata(store, "retrieve", big, "big", "-o", str(target)).returncode == 0
    assert target.read_bytes() == BIG
    assert target.stat().st_mode & 0o077 == 0


def test_too_large_input_of_unknown_size_says_more_than_the_limit(store: str, big: str) -> None:
    result = domdata(store, "--max-item-size", "10", "store", big, "xl", stdin=b"x" * 1000)
    assert result.returncode == 5
    line = assert_one_line_error(result.stderr, store, "more than the limit of 10 bytes")
    assert "11" not in line
