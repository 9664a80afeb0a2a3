"""The domain's lock, taken as libxl takes it: flock, then the inode re-check.

Unlike libxl, a released lock file is kept (with its descriptor, at most
``KEPT_LOCKS`` of them) for the next call; lockers that find a file unlinked
under them start over, so the two schemes mix. The file is unlinked, before
closing, when its incarnation ends (``discard``, ``unlink_lock``).

A lock handed to child processes (``hand_off``) is never unlocked: each
process closes its copy of the descriptor and the flock goes with the last.
A child adopts it through its inherited descriptor (``adopt``) and never
closes that descriptor.
"""

from __future__ import annotations

import fcntl
import os

from ..._errors import LockTimeout
from ..._types import Incarnation
from .._wait import wait_for
from ._directory import Directory
from ._names import LOCK_USERID, Entry, item_name

#: Unheld lock files a store keeps open between calls (one descriptor each).
KEPT_LOCKS = 64

_EX_NB = fcntl.LOCK_EX | fcntl.LOCK_NB
_UN = fcntl.LOCK_UN
_LOCK = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, _EX_NB)
    except BlockingIOError:
        return False
    return True


class LockFile:
    """An open lock file; held while ``flock``-ed and its path names its inode."""

    __slots__ = ("adopted", "dev", "doomed", "fd", "handed", "incarnation", "ino", "locks", "name")
    #: A handed-off or adopted lock is kept as held by the contract, which re-checks it.
    shared = False

    def __init__(self, locks: LockFiles, incarnation: Incarnation, name: str, fd: int) -> None:
        self.locks = locks
        self.incarnation = incarnation
        self.name = name
        self.fd = fd
        mine = os.fstat(fd)
        self.dev, self.ino = mine.st_dev, mine.st_ino
        #: The path was unlinked while held (the incarnation ended): close, never keep.
        self.doomed = False
        #: Children may hold the descriptor: release closes it, never unlocks.
        self.handed = False
        #: The process inherited the descriptor: domdata neither unlocks nor closes it.
        self.adopted = False

    def check(self) -> None:
        """An flock held through a descriptor cannot be lost."""

    def release(self) -> None:
        self.locks.release(self)

    def discard(self) -> None:
        """Release the libxl way: unlink the file while holding it, then close."""
        self.locks.directory.unlink(self.name)
        self.doomed = True
        self.locks.release(self)


class LockFiles:
    """The lock files of one directory: the held ones and the kept ones."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        # A plain dict (ordered, and quicker than OrderedDict): the oldest kept file goes first.
        self._kept: dict[Incarnation, LockFile] = {}
        self._held: dict[Incarnation, LockFile] = {}

    def lock(self, incarnation: Incarnation, timeout: float) -> LockFile:
        """flock the incarnation's lock file, then check its path still names that inode."""
        kept = self._kept.pop(incarnation, None)
        if kept is None:
            return self._wait(incarnation, None, timeout)
        # The common case, without the waiting loop: the kept file, free, still at
        # its path. flock and re-check inline (not _try_flock, _names_inode): this
        # is every single call's lock.
        try:
            fcntl.flock(kept.fd, _EX_NB)
            now = os.stat(kept.name, dir_fd=self.directory.fd, follow_symlinks=False)
        except BlockingIOError:
            return self._wait(incarnation, kept, timeout)  # held: wait for it
        except FileNotFoundError:
            os.close(kept.fd)  # its holder released it by unlinking
            return self._wait(incarnation, None, timeout)
        except BaseException:
            os.close(kept.fd)
            raise
        if now.st_ino != kept.ino or now.st_dev != kept.dev:
            os.close(kept.fd)  # its holder released it by unlinking
            return self._wait(incarnation, None, timeout)
        self._held[incarnation] = kept
        return kept

    def _wait(self, incarnation: Incarnation, candidate: LockFile | None, timeout: float) -> LockFile:
        """Lock the incarnation's file, *candidate* first if one is open, waiting up to *timeout*."""
        got: list[LockFile] = []

        def attempt() -> bool:
            nonlocal candidate
            while True:
                if candidate is None:
                    candidate = self._open(incarnation)
                if not _try_flock(candidate.fd):
                    return False
                if self._names_inode(candidate):
                    got.append(candidate)
                    return True
                # Its holder released it by unlinking: lock the path's new file.
                os.close(candidate.fd)
                candidate = None

        try:
            if not wait_for(attempt, timeout):
                raise LockTimeout(
                    f"the domain's lock is still held after {timeout:g} s",
                    domain=incarnation,
                    store=self.directory.url,
                )
        except BaseException:
            if candidate is not None:
                os.close(candidate.fd)
            raise
        lock = got[0]
        self._held[incarnation] = lock
        return lock

    def hand_off(self, incarnation: Incarnation, timeout: float) -> LockFile:
        """Lock the incarnation for children to inherit: released by closing, never unlocked."""
        lock = self.lock(incarnation, timeout)
        lock.handed = True
        return lock

    def adopt(self, fd: int, incarnation: Incarnation) -> LockFile | None:
        """The incarnation's lock held through the inherited *fd*, if *fd* is
        the open lock file the incarnation's path names and flocking it
        without waiting succeeds (no other description holds it)."""
        name = item_name("l", incarnation, LOCK_USERID)
        try:
            theirs = os.fstat(fd)
            now = os.stat(name, dir_fd=self.directory.fd, follow_symlinks=False)
            if (theirs.st_dev, theirs.st_ino) != (now.st_dev, now.st_ino) or not _try_flock(fd):
                return None
        except OSError:
            return None
        lock = LockFile(self, incarnation, name, fd)
        lock.adopted = True
        if not self._names_inode(lock):
            return None
        self._held[incarnation] = lock
        return lock

    def _open(self, incarnation: Incarnation) -> LockFile:
        name = item_name("l", incarnation, LOCK_USERID)
        try:
            return LockFile(self, incarnation, name, os.open(name, _LOCK, 0o600, dir_fd=self.directory.fd))
        except OSError as exc:
            self.directory.fail(f"cannot open the lock file {name}", exc, incarnation)

    def _names_inode(self, lock: LockFile) -> bool:
        """libxl's re-check: does the path still name the inode we flocked?"""
        try:
            now = os.stat(lock.name, dir_fd=self.directory.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return now.st_ino == lock.ino and now.st_dev == lock.dev

    def held(self, incarnation: Incarnation) -> LockFile | None:
        return self._held.get(incarnation)

    def release(self, lock: LockFile) -> None:
        held = self._held
        if held.get(lock.incarnation) is lock:
            del held[lock.incarnation]
        if lock.adopted:
            return
        if lock.doomed or lock.handed:
            os.close(lock.fd)
            return
        fcntl.flock(lock.fd, _UN)
        kept = self._kept
        kept[lock.incarnation] = lock
        if len(kept) > KEPT_LOCKS:
            os.close(kept.pop(next(iter(kept))).fd)

    def unlink_lock(self, entry: Entry) -> bool:
        """Unlink a lock file the libxl way: only while holding it, then close."""
        held = self._held.get(entry.incarnation)
        if held is not None and entry.name == held.name:
            self.directory.unlink(entry.name)
            held.doomed = True
            return True
        kept = self._kept.get(entry.incarnation)
        if kept is not None and entry.name == kept.name:
            os.close(self._kept.pop(entry.incarnation).fd)
        try:
            fd = os.open(entry.name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.directory.fd)
        except OSError:
            return False
        lock = LockFile(self, entry.incarnation, entry.name, fd)
        try:
            return _try_flock(fd) and self._names_inode(lock) and self.directory.unlink(entry.name)
        finally:
            os.close(fd)

    def close(self) -> None:
        for lock in list(self._held.values()):
            if not lock.adopted:
                os.close(lock.fd)
                # Closed with the store: a later release must neither unlock nor close it again.
                lock.adopted = True
        self._held.clear()
        while self._kept:
            os.close(self._kept.popitem()[1].fd)
