"""stdout full, closed or gone, stdin closed, stderr closed: on every command
click runs, one line on stderr and the documented status, never a traceback
and never an error on stdout."""

from __future__ import annotations

import os

import pytest

from tests._faults import assert_one_line_error, domdata
from tests.cli_hostile._shared import BROKEN_PIPE, OUTPUT_FAILED, sh

# -- stdout full, closed or gone, on every command click runs -----------------------

#: Commands that print to stdout and go through click.
PRINTING = [
    ["info"],
    ["info", "--json"],
    ["registry"],
    ["domain", "list"],
    ["list", "--json"],
    ["list"],
    ["show", "1", "k"],
    ["changes"],
    ["reap", "--dry-run"],
    ["export", "1"],
    ["--help"],
    ["--version"],
    ["domain", "create", "--json", "web2"],
    ["unlink", "--json", "1", "nothing"],
]


@pytest.mark.parametrize("args", PRINTING, ids=" ".join)
def test_stdout_on_dev_full_is_one_line_and_14(store: str, dom: str, args: list[str]) -> None:
    with open("/dev/full", "wb") as full:
        result = domdata(store, *args, stdout=full)
    assert result.returncode == OUTPUT_FAILED, result.stderr
    assert_one_line_error(result.stderr, "stdout", "No space left on device")


@pytest.mark.parametrize("args", PRINTING, ids=" ".join)
def test_a_closed_stdout_is_one_line_and_14(store: str, dom: str, args: list[str]) -> None:
    result = sh(store, f"exec domdata {' '.join(args)} >&-")
    assert result.returncode == OUTPUT_FAILED, result.stderr
    assert_one_line_error(result.stderr, "stdout", "closed")


@pytest.mark.parametrize("args", PRINTING, ids=" ".join)
def test_a_reader_that_went_away_is_141_and_silent(store: str, dom: str, args: list[str]) -> None:
    read, write = os.pipe()
    os.close(read)
    try:
        result = domdata(store, *args, stdout=write)
    finally:
        os.close(write)
    assert result.returncode == BROKEN_PIPE, result.stderr
    assert result.stderr == b""


def test_a_closed_stdout_does_not_fail_a_command_that_prints_nothing(store: str, dom: str) -> None:
    result = sh(store, "exec domdata domain destroy web1 >&-")
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""


# -- a closed stdin --------------------------------------------------------------


def test_a_closed_stdin_is_one_line_and_changes_nothing(store: str, dom: str) -> None:
    result = sh(store, f"exec domdata store {dom} k <&-")
    assert result.returncode == 1, result.stderr
    assert_one_line_error(result.stderr, "cannot read the data: stdin is closed")
    assert domdata(store, "retrieve", dom, "k").stdout == b"value"


def test_import_from_a_closed_stdin_is_one_line_and_imports_nothing(store: str, dom: str) -> None:
    result = sh(store, f"exec domdata import {dom} <&-")
    assert result.returncode == 1, result.stderr
    assert_one_line_error(result.stderr, "stdin is closed", "nothing imported")
    assert domdata(store, "retrieve", dom, "k").stdout == b"value"


# -- a closed stderr -------------------------------------------------------------------


@pytest.mark.parametrize("command", ["info --bogus", "retrieve 99 k", "nosuchcommand", "retrieve -- -1 k"])
def test_errors_never_go_to_stdout_when_stderr_is_closed(store: str, command: str) -> None:
    result = sh(store, f"exec domdata {command} 2>&-")
    assert result.returncode in (2, 3)
    assert result.stdout == b""
