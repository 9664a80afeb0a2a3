"""Start-up: a single-item command imports only what it runs (timings are in
benchmarks/startup.py; a test asserts what was imported, never how long)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Modules no single-item command on SQLite needs. (``signal`` is not among
#: them: every command turns Ctrl-C into one line and status 130.)
NOT_NEEDED = [
    "json",
    "subprocess",
    "logging",
    "importlib.metadata",
    "tarfile",
    "domdata.registry",
    "domdata.reaper",
    "psycopg",
    "libvirt",
]

#: Runs one command line through an entry point (``domdata.cli``: click's; or
#: ``domdata._cli.fast``: the ``domdata`` command's), then lists what it imported.
PROBE = """
import sys
from {entry} import main
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print(sorted(sys.modules), file=sys.stderr)
"""
CLICK, FAST = "domdata.cli", "domdata._cli.fast"


def _imported(entry: str, args: list[str], env: dict[str, str] | None = None) -> set[str]:
    """The modules a process running *args* through *entry* imported (stdin: one byte)."""
    probe = subprocess.run(
        [sys.executable, "-c", PROBE.format(entry=entry), *args],
        env=env,
        input=b"x",
        capture_output=True,
        check=True,
    )
    modules: list[str] = json.loads(probe.stderr.decode().replace("'", '"'))
    return set(modules)


def _with_web1(env: dict[str, str]) -> dict[str, str]:
    """*env*, whose store now has the managed domain web1."""
    subprocess.run([sys.executable, "-m", "domdata", "domain", "create", "web1"], env=env, check=True)
    return env


@pytest.mark.parametrize(
    "args",
    [
        ["retrieve", "web1", "xl"],
        ["store", "web1", "xl", "-"],
        ["unlink", "web1", "-q", "xl"],
        ["list", "web1"],
    ],
)
def test_a_single_item_command_imports_only_what_it_runs(tmp_path: Path, args: list[str]) -> None:
    env = {**os.environ, "DOMDATA_STORE": f"sqlite://{tmp_path / 'x.db'}"}
    modules = _imported(CLICK, args, _with_web1(env))
    assert "domdata.stores.sqlite" in modules
    assert [m for m in NOT_NEEDED if m in modules] == []


def test_help_and_completion_load_no_command_module_they_do_not_run() -> None:
    # --help lists every command, so it loads the lazy ones: their imports must stay light.
    modules = _imported(CLICK, ["--help"])
    assert "domdata._cli.transfer" in modules
    assert [m for m in ("tarfile", "importlib.metadata", "domdata._cli.archive") if m in modules] == []


#: What the fast path (the ``domdata`` entry point) leaves out on top: click and
#: what only the click commands or other stores, sources and commands need.
NOT_NEEDED_FAST = [
    *NOT_NEEDED,
    "click",
    "domdata.cli",
    "dataclasses",
    "inspect",
    "uuid",
    "platform",
    "pathlib",
    "urllib.parse",
    "ipaddress",
    "platformdirs",
    "domdata._boot",
    "domdata._report",
    "domdata.watch",
    # What the stdlib costs most to import (issue 12): type hints, regular
    # expressions, enums, and the signal and threading modules.
    "typing",
    "re",
    "enum",
    "signal",
    "threading",
    "weakref",
    "contextlib",
    "struct",
    "domdata._xen_view",
    "domdata._handoff",
]

@pytest.mark.parametrize(
    "args",
    [
        ["retrieve", "web1", "xl"],
        ["store", "web1", "xl", "-"],
        ["unlink", "web1", "-q", "xl"],
        ["--not-durable", "--lock-timeout", "5", "list", "1"],
    ],
)
def test_the_entry_point_runs_a_single_item_command_without_click(tmp_path: Path, args: list[str]) -> None:
    env = {**os.environ, "DOMDATA_STORE": f"sqlite://{tmp_path / 'x.db'}"}
    modules = _imported(FAST, args, _with_web1(env))
    assert "domdata.stores.sqlite" in modules
    assert [m for m in NOT_NEEDED_FAST if m in modules] == []


def test_the_default_store_is_found_without_platformdirs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DOMDATA_STORE"}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    modules = _imported(FAST, ["retrieve", "web1", "xl"], _with_web1(env))
    assert (tmp_path / "state" / "domdata" / "domdata.db").is_file()
    assert [m for m in NOT_NEEDED_FAST if m in modules] == []


def test_the_entry_point_hands_anything_else_to_click() -> None:
    assert {"click", "domdata.cli"} <= _imported(FAST, ["--help"])
