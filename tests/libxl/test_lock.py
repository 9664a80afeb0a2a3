"""The libxl store's lock against libxl's own locking, with real processes and flock.

libxl locks ``userdata-l.<domid>.<uuid>.domain-userdata-lock`` by: open
O_CREAT, flock(LOCK_EX), check the path still names the inode (else close
and start over), and releases by unlinking the path, then closing. domdata
keeps the file between calls; the two must never both hold the lock.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import domdata
from domdata import Domain

fork = multiprocessing.get_context("fork")
ROUNDS = 200


def libxl_lock(path: str) -> int:
    """libxl__lock_domain_userdata, without the domain check."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            now = os.stat(path)
        except FileNotFoundError:
            os.close(fd)
            continue
        mine = os.fstat(fd)
        if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
            return fd
        os.close(fd)


def libxl_unlock(path: str, fd: int) -> None:
    """libxl__unlock_domain_userdata: unlink first, then close."""
    os.unlink(path)
    os.close(fd)


# A separate interpreter that locks as libxl does, says "locked", waits for a line on stdin.
_LOCKER = f"""
import os, sys, fcntl
{__import__("inspect").getsource(libxl_lock)}
{__import__("inspect").getsource(libxl_unlock)}
fd = libxl_lock(sys.argv[1])
print("locked", flush=True)
sys.stdin.readline()
libxl_unlock(sys.argv[1], fd)
print("released", flush=True)
"""


@pytest.fixture
def url(tmp_path: Path) -> str:
    (tmp_path / "xen").mkdir()
    return f"libxl://{tmp_path / 'xen'}"


@pytest.fixture
def ctx(url: str) -> Iterator[domdata.Context]:
    with domdata.open(url, lock_timeout=0.3) as context:
        yield context


@pytest.fixture
def dom(ctx: domdata.Context) -> Domain:
    return ctx.managed.create()


def _lock_path(url: str, dom: Domain) -> str:
    return f"{url.removeprefix('libxl://')}/userdata-l.{dom.domid}.{dom.uuid}.domain-userdata-lock"


def _start_locker(path: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _LOCKER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def _said(locker: subprocess.Popen[str], within: float) -> str | None:
    assert locker.stdout is not None
    ready, _, _ = select.select([locker.stdout], [], [], within)
    return locker.stdout.readline().strip() if ready else None


def _release(locker: subprocess.Popen[str]) -> None:
    assert locker.stdin is not None
    locker.stdin.write("\n")
    locker.stdin.flush()
    assert _said(locker, 10) == "released"
    assert locker.wait(10) == 0


def test_domdata_waits_while_libxl_holds_the_lock(url: str, ctx: domdata.Context, dom: Domain) -> None:
    ctx.store(dom.domid, "xl", b"before")
    locker = _start_locker(_lock_path(url, dom))
    try:
        assert _said(locker, 10) == "locked"
        with pytest.raises(domdata.LockTimeout):
            ctx.store(dom.domid, "xl", b"intruder")
        with domdata.open(url, lock_timeout=30) as patient:
            waiting = threading.Thread(target=patient.store, args=(dom.domid, "xl", b"after"))
            waiting.start()
            waiting.join(0.5)
            assert waiting.is_alive(), "domdata wrote while libxl held the lock"
            item = (
                _lock_path(url, dom)
                .replace("userdata-l.", "userdata-d.")
                .replace("domain-userdata-lock", "xl")
            )
            assert Path(item).read_bytes() == b"before"
            _release(locker)
            waiting.join(30)
            assert not waiting.is_alive()
    finally:
        locker.kill()
        locker.wait()
    assert ctx.retrieve(dom.domid, "xl") == b"after"


def test_libxl_waits_while_domdata_holds_the_lock(url: str, ctx: domdata.Context, dom: Domain) -> None:
    ctx.store(dom.domid, "xl", b"kept lock file")
    path = _lock_path(url, dom)
    assert os.path.exists(path)
    with ctx.lock(dom.domid):
        locker = _start_locker(path)
        try:
            assert _said(locker, 0.5) is None, "libxl got the lock domdata holds"
        except BaseException:
            locker.kill()
            locker.wait()
            raise
    try:
        assert _said(locker, 10) == "locked"
        with pytest.raises(domdata.LockTimeout):
            ctx.retrieve(dom.domid, "xl")
        _release(locker)
    finally:
        locker.kill()
        locker.wait()
    assert not os.path.exists(path)  # libxl unlinked it on release
    assert ctx.retrieve(dom.domid, "xl") == b"kept lock file"  # domdata's kept descriptor was stale


def test_a_kept_lock_file_that_libxl_unlinked_is_not_trusted(
    url: str, ctx: domdata.Context, dom: Domain
) -> None:
    # domdata keeps its lock file open between calls. libxl unlinks the file
    # when it releases, and the next libxl locker creates a new one: domdata's
    # kept descriptor now names a file nobody else locks. Only the inode
    # re-check tells domdata that flocking it proves nothing.
    ctx.store(dom.domid, "xl", b"before")
    path = _lock_path(url, dom)
    libxl_unlock(path, libxl_lock(path))
    locker = _start_locker(path)
    try:
        assert _said(locker, 10) == "locked"
        with pytest.raises(domdata.LockTimeout):
            ctx.store(dom.domid, "xl", b"intruder")
        _release(locker)
    finally:
        locker.kill()
        locker.wait()
    assert ctx.retrieve(dom.domid, "xl") == b"before"


def test_destroy_unlinks_the_lock_before_closing_so_a_waiting_libxl_starts_over(
    url: str, ctx: domdata.Context, dom: Domain
) -> None:
    ctx.store(dom.domid, "xl", b"doomed")
    path = _lock_path(url, dom)
    with ctx.lock(dom.domid):
        locker = _start_locker(path)
        try:
            assert _said(locker, 0.5) is None
            ctx.destroy(dom.domid)
            assert not os.path.exists(path)
        except BaseException:
            locker.kill()
            locker.wait()
            raise
    try:
        assert _said(locker, 10) == "locked"  # on a new file: the old inode was unlinked
        assert os.path.exists(path)
        _release(locker)
    finally:
        locker.kill()
        locker.wait()
    assert [f for f in os.listdir(url.removeprefix("libxl://")) if f".{dom.domid}." in f] == []


# -- interleaving: kept lock files and unlink-on-release lockers --------------------------


def _critical(directory: str, violations: Any) -> None:
    """Enter, prove nobody else is inside, increment a shared counter non-atomically, leave."""
    marker = os.path.join(directory, "inside")
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        with violations.get_lock():
            violations.value += 1
        return
    counter = os.path.join(directory, "counter")
    with open(counter, "rb") as f:
        value = int(f.read() or b"0")
    with open(counter, "wb") as f:
        f.write(str(value + 1).encode())
    os.unlink(marker)


def _domdata_worker(url: str, domid: int, directory: str, start: Any, violations: Any) -> None:
    with domdata.open(url, lock_timeout=120) as ctx:
        start.wait()
        for _ in range(ROUNDS):
            with ctx.lock(domid):
                _critical(directory, violations)


def _libxl_worker(path: str, directory: str, start: Any, violations: Any) -> None:
    start.wait()
    for _ in range(ROUNDS):
        fd = libxl_lock(path)
        _critical(directory, violations)
        libxl_unlock(path, fd)


def test_kept_and_unlinked_lock_files_never_admit_two_holders(url: str, tmp_path: Path, dom: Domain) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "counter").write_bytes(b"0")
    start = fork.Event()
    violations = fork.Value("i", 0)
    args = (str(shared), start, violations)
    workers = [fork.Process(target=_domdata_worker, args=(url, dom.domid, *args)) for _ in range(3)]
    workers += [fork.Process(target=_libxl_worker, args=(_lock_path(url, dom), *args)) for _ in range(3)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(300)
        assert worker.exitcode == 0
    assert violations.value == 0
    assert (shared / "counter").read_bytes() == str(6 * ROUNDS).encode()


def test_two_contexts_in_one_process_exclude_each_other(url: str, ctx: domdata.Context, dom: Domain) -> None:
    with (
        domdata.open(url, lock_timeout=0.2) as other,
        ctx.lock(dom.domid),
        pytest.raises(domdata.LockTimeout),
    ):
        other.retrieve(dom.domid, "xl")
