"""Issue 10, waits: every wait honours ``--lock-timeout`` and ends in LockTimeout
(6); a timeout that is not a finite, non-negative number is a usage error (2);
Ctrl-C while waiting exits 130 with one line.

The holders are real processes: a ``domdata lock`` running a shell, a process
holding the libxl directory's flock, and one stopped (SIGSTOP) inside a SQLite
``BEGIN IMMEDIATE``. The subprocess timeouts below are hang guards, far above
the --lock-timeout given: a wait that ignores it is caught, nothing is timed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._faults import assert_one_line_error, created_domain, domdata, environment

#: The documented statuses (README, "Exit statuses").
LOCK_TIMEOUT, INTERRUPTED = 6, 130


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "1e300"])
def test_a_lock_timeout_that_is_not_a_duration_is_a_usage_error(tmp_path: Path, value: str) -> None:
    store = f"sqlite://{tmp_path / 'domdata.db'}"
    assert domdata(store, "--lock-timeout", value, "list").returncode == 2
    from_env = domdata(None, "list", env=environment(store, DOMDATA_LOCK_TIMEOUT=value))
    assert from_env.returncode == 2
    assert b"Traceback" not in from_env.stderr


def _holder(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a process that prints ``held`` once it holds its lock, then waits for stdin."""
    held = subprocess.Popen(args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert held.stdout is not None
    assert held.stdout.readline() == b"held\n"
    return held


def _release(held: subprocess.Popen[bytes]) -> None:
    os.kill(held.pid, signal.SIGCONT)
    assert held.stdin is not None
    held.stdin.close()
    held.wait(timeout=60)


@pytest.fixture(params=["sqlite", "libxl"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "libxl":
        (tmp_path / "xen").mkdir()
        return f"libxl://{tmp_path / 'xen'}"
    return f"sqlite://{tmp_path / 'domdata.db'}"


@pytest.fixture
def held_domain(store: str) -> Iterator[str]:
    """A domain whose lock another process (``domdata lock``) holds; its domid."""
    domid = str(created_domain(store))
    holder = _holder(["domdata", "lock", domid, "--", "sh", "-c", "echo held; read line"], environment(store))
    try:
        yield domid
    finally:
        _release(holder)


def test_a_held_domain_lock_ends_in_lock_timeout(store: str, held_domain: str) -> None:
    result = domdata(store, "--lock-timeout", "0.3", "store", held_domain, "xl", stdin=b"x", timeout=30)
    assert result.returncode == LOCK_TIMEOUT
    assert_one_line_error(result.stderr, store)


def _interrupt_while_waiting(store: str, args: list[str]) -> subprocess.CompletedProcess[bytes]:
    waiting = subprocess.Popen(
        ["domdata", "--lock-timeout", "30", *args],
        env=environment(store),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # Not a timed assertion: let it reach the wait, then interrupt it.
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=1.5)
        waiting.send_signal(signal.SIGINT)
        out, err = waiting.communicate(timeout=10)
    finally:
        waiting.kill()
        waiting.wait()
    return subprocess.CompletedProcess(waiting.args, waiting.returncode, out, err)


def test_ctrl_c_while_waiting_for_a_domain_lock_exits_130(store: str, held_domain: str) -> None:
    result = _interrupt_while_waiting(store, ["retrieve", held_domain, "xl"])
    assert result.returncode == INTERRUPTED
    assert_one_line_error(result.stderr, "interrupted")


def test_the_libxl_directory_lock_ends_in_lock_timeout(tmp_path: Path) -> None:
    xen = tmp_path / "xen"
    xen.mkdir()
    store = f"libxl://{xen}"
    flock = f"import fcntl, os, sys; fd = os.open({str(xen)!r}, os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX)"
    holder = _holder([sys.executable, "-c", f"{flock}; print('held', flush=True); sys.stdin.read()"], {})
    try:
        result = domdata(store, "--lock-timeout", "0.3", "domain", "create", timeout=10)
    finally:
        _release(holder)
    assert result.returncode == LOCK_TIMEOUT
    assert_one_line_error(result.stderr, store)


STOPPED_WRITER = """
import os, signal, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("held", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
sys.stdin.read()
"""


@pytest.fixture
def stopped_writer(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A SQLite store whose database a stopped process holds mid-transaction; (store, domid)."""
    path = tmp_path / "domdata.db"
    store = f"sqlite://{path}"
    domid = str(created_domain(store))
    holder = _holder([sys.executable, "-c", STOPPED_WRITER, str(path)], {})
    try:
        yield store, domid
    finally:
        _release(holder)


def test_a_writer_stopped_mid_transaction_ends_in_lock_timeout(stopped_writer: tuple[str, str]) -> None:
    store, domid = stopped_writer
    result = domdata(store, "--lock-timeout", "0.5", "store", domid, "xl", stdin=b"x", timeout=15)
    assert result.returncode == LOCK_TIMEOUT
    assert_one_line_error(result.stderr, store)


def test_ctrl_c_behind_a_stopped_writer_exits_130(stopped_writer: tuple[str, str]) -> None:
    store, domid = stopped_writer
    result = _interrupt_while_waiting(store, ["store", domid, "xl"])
    assert result.returncode == INTERRUPTED
    assert_one_line_error(result.stderr, "interrupted")
