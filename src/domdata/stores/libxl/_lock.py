"""The domain's lock, taken as libxl takes it: flock, then the inode re-check.

``_Locks`` holds ``LibxlStore``'s lock methods (mixed into it); the lock
files it releases are kept open for the next call, at most ``KEPT_LOCKS``.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, NoReturn

from ..._errors import LockTimeout
from ..._types import Incarnation
from ..base import HeldLock
from ._names import LOCK_USERID, _Entry, item_name

#: Unheld lock files a store keeps open between calls (one descriptor each).
KEPT_LOCKS = 64

_LOCK = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


class _LockFile:
    """An open lock file; held while ``flock``-ed and its path names its inode."""

    __slots__ = ("dev", "doomed", "fd", "incarnation", "ino", "name", "store")

    def __init__(self, store: _Locks, incarnation: Incarnation, name: str, fd: int) -> None:
        self.store = store
        self.incarnation = incarnation
        self.name = name
        self.fd = fd
        mine = os.fstat(fd)
        self.dev, self.ino = mine.st_dev, mine.st_ino
        #: The path was unlinked while held (the incarnation was dropped): close, never keep.
        self.doomed = False

    def release(self) -> None:
        self.store._release(self)


class _Locks:
    """``LibxlStore``'s per-domain lock; the store provides the directory and plumbing."""

    if TYPE_CHECKING:
        url: str
        _dir: int
        _kept: OrderedDict[Incarnation, _LockFile]
        _held: dict[Incarnation, _LockFile]

        def _fail(
            self, what: str, exc: OSError, incarnation: object = None, userid: str | None = None
        ) -> NoReturn: ...

        def _unlink(self, name: str) -> bool: ...

    def lock(self, domid: int, uuid: str | None, timeout: float) -> HeldLock:
        """flock the incarnation's lock file, then check its path still names that inode.

        Unlike libxl, release keeps the file (and its descriptor) for the next
        call; lockers that find a file unlinked under them start over, so the
        two schemes mix. The file is unlinked, before closing, by ``drop``.
        """
        if uuid is None:
            raise TypeError("the libxl store's lock is keyed by (domid, uuid)")
        incarnation = Incarnation(domid, uuid)
        lock = self._kept.pop(incarnation, None)
        deadline = None
        pause = 0.0005
        try:
            while True:
                if lock is None:
                    lock = self._open_lock(incarnation)
                if self._try_flock(lock.fd):
                    if self._names_inode(lock):
                        self._held[incarnation] = lock
                        return lock
                    # Its holder released it by unlinking: lock the path's new file.
                    os.close(lock.fd)
                    lock = None
                    continue
                now = time.monotonic()
                if deadline is None:
                    deadline = now + timeout
                if now >= deadline:
                    raise LockTimeout(
                        f"the domain's lock is still held after {timeout:g} s",
                        domain=incarnation,
                        store=self.url,
                    )
                time.sleep(pause)
                pause = min(pause * 2, 0.02)
        except BaseException:
            if lock is not None:
                os.close(lock.fd)
            raise

    def _open_lock(self, incarnation: Incarnation, flags: int = _LOCK) -> _LockFile:
        name = item_name("l", incarnation, LOCK_USERID)
        try:
            return _LockFile(self, incarnation, name, os.open(name, flags, 0o600, dir_fd=self._dir))
        except OSError as exc:
            self._fail(f"cannot open the lock file {name}", exc, incarnation)

    @staticmethod
    def _try_flock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _names_inode(self, lock: _LockFile) -> bool:
        """libxl's re-check: does the path still name the inode we flocked?"""
        try:
            now = os.stat(lock.name, dir_fd=self._dir, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return now.st_ino == lock.ino and now.st_dev == lock.dev

    def _release(self, lock: _LockFile) -> None:
        if self._held.get(lock.incarnation) is lock:
            del self._held[lock.incarnation]
        if lock.doomed:
            os.close(lock.fd)
            return
        fcntl.flock(lock.fd, fcntl.LOCK_UN)
        self._kept[lock.incarnation] = lock
        if len(self._kept) > KEPT_LOCKS:
            os.close(self._kept.popitem(last=False)[1].fd)

    def _discard(self, lock: HeldLock) -> None:
        """Release a held lock the libxl way: unlink its file, then close."""
        assert isinstance(lock, _LockFile)
        self._unlink(lock.name)
        lock.doomed = True
        lock.release()

    def _unlink_lock(self, entry: _Entry) -> bool:
        """Unlink a lock file the libxl way: only while holding it, then close."""
        held = self._held.get(entry.incarnation)
        if held is not None and entry.name == held.name:
            self._unlink(entry.name)
            held.doomed = True
            return True
        kept = self._kept.get(entry.incarnation)
        if kept is not None and entry.name == kept.name:
            os.close(self._kept.pop(entry.incarnation).fd)
        try:
            fd = os.open(entry.name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._dir)
        except OSError:
            return False
        lock = _LockFile(self, entry.incarnation, entry.name, fd)
        try:
            return self._try_flock(fd) and self._names_inode(lock) and self._unlink(entry.name)
        finally:
            os.close(fd)
