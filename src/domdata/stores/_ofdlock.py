"""Per-domain locks as byte ranges of one lock file (Linux open file description locks).

One byte per domid: offset = domid. OFD locks belong to the open file, not
to the process, so two contexts in one process exclude each other, closing
some other descriptor of the file drops nothing, and a process that dies
releases its locks with its descriptors.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from .._errors import LockTimeout
from ._wait import wait_for

# struct flock on LP64 Linux: short type, short whence, off_t start, off_t len, pid_t pid.
_FLOCK = struct.Struct("hhxxxxqqixxxx")
_CONFLICT = (errno.EAGAIN, errno.EACCES)


class RangeLocks:
    """The lock file of one store, opened once per context."""

    def __init__(self, path: str, store: str) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        self._store = store

    def lock(self, domid: int, timeout: float) -> _HeldRange:
        request = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, domid, 1, 0)

        def attempt() -> bool:
            try:
                fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, request)
            except OSError as exc:
                if exc.errno not in _CONFLICT:
                    raise
                return False
            return True

        if not wait_for(attempt, timeout):
            raise LockTimeout(
                f"the domain's lock is still held after {timeout:g} s", domain=domid, store=self._store
            )
        return _HeldRange(self._fd, domid)

    def close(self) -> None:
        os.close(self._fd)


class _HeldRange:
    __slots__ = ("_domid", "_fd")

    def __init__(self, fd: int, domid: int) -> None:
        self._fd = fd
        self._domid = domid

    def release(self) -> None:
        fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, self._domid, 1, 0))

    # The lock is keyed by domid: nothing of an ended incarnation is left to remove.
    discard = release
