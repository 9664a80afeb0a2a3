"""Shared by the tests of issue 10 (tests/test_faults_*.py): run domdata as a real
process, check the shape of its stderr, snapshot a directory tree, mount a tmpfs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent
def environment(store: str | None = None, **extra: str) -> dict[str, str]:
    """A domdata process's environment: no DOMDATA_* of the caller's, the venv on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOMDATA_")}
    env["PATH"] = f"{BIN}:{env['PATH']}"
    if store is not None:
        env["DOMDATA_STORE"] = store
    env.update(extra)
    return env


def domdata(
    store: str | None,
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    **popen: Any,
) -> subprocess.CompletedProcess[bytes]:
    """``domdata ARGS`` (the venv's entry point) as a real process on *store*;
    stdout and stderr captured unless *popen* says otherwise."""
    streams: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.run(
        ["domdata", *args], input=stdin, env=env or environment(store), timeout=timeout, **streams
    )


def assert_one_line_error(stderr: bytes | str, *parts: str) -> str:
    """stderr is one ``domdata: ...`` line, no traceback, naming each of *parts*."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    assert "Traceback" not in text, text
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("domdata: "), text
    for part in parts:
        assert part in lines[0], text
    return lines[0]


def snapshot(*roots: Path) -> dict[str, tuple[int, int, bytes | None]]:
    """Every path under *roots*: (mode, size, content of regular files up to 1 MiB)."""
    seen: dict[str, tuple[int, int, bytes | None]] = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            content = path.read_bytes() if path.is_file() and st.st_size <= 1 << 20 else None
            seen[str(path)] = (st.st_mode, st.st_size, content)
    return seen


@contextmanager
def tmpfs(where: Path, size: str, *options: str) -> Iterator[Path]:
    """A small tmpfs mounted at *where* (root only). Skipped where it cannot be
    mounted, except in CI (``CI`` set), where that is an error."""
    where.mkdir(exist_ok=True)
    opts = ",".join([f"size={size}", "mode=0755", *options])
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        why = f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def created_domain(store: str, name: str = "web1") -> int:
    made = domdata(store, "domain", "create", name)
    assert made.returncode == 0, made.stderr
    return int(made.stdout)
