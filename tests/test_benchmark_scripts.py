"""The benchmark scripts explain themselves and refuse what they cannot run
(the timings themselves are never asserted: they are read from the tables)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, BENCHMARKS / name, *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(("name", "says"), [("bench.py", "raw baseline"), ("startup.py", "python -c pass")])
def test_help_says_what_the_script_measures(name: str, says: str) -> None:
    result = script(name, "--help")
    assert result.returncode == 0
    assert says in result.stdout


def test_bench_lists_its_backends() -> None:
    backends = "one of changes, handoff, libvirt, libxl, postgresql, sqlite"
    assert backends in script("bench.py", "--help").stdout


def test_an_unknown_backend_is_an_error() -> None:
    result = script("bench.py", "sqlite", "nosuch")
    assert result.returncode == 2
    known = "changes, handoff, libvirt, libxl, postgresql, sqlite"
    assert f"unknown backend nosuch (known: {known})" in result.stderr
    assert result.stdout == ""
