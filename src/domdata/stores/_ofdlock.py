"""Per-domain locks as byte ranges of one lock file (Linux open file description locks).

One byte per domid: offset = domid. OFD locks belong to the open file, not
to the process, so two contexts in one process exclude each other, closing
some other descriptor of the file drops nothing, and a process that dies
releases its locks with its descriptors.

A lock handed to child processes (``hand_off``) is taken on a description
of its own, which children inherit: it is released when the last process
holding that description closes it, never by an unlock. While this process
holds such a description (handed off or inherited), ``lock`` of that domid
succeeds at once.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys

from .._errors import LockTimeout
from ._wait import wait_for

_ORDER = sys.byteorder


def _at(offset: int, size: int) -> int:
    """The shift that puts a field of *size* bytes at *offset* of a 32-byte native-order integer."""
    return 8 * offset if _ORDER == "little" else 8 * (32 - offset - size)


# struct flock on LP64 Linux: short l_type at 0, short l_whence at 2 (SEEK_SET:
# 0), off_t l_start at 8, off_t l_len at 16, pid_t l_pid at 24 (0), 32 bytes.
_TYPE_AT, _START_AT = _at(0, 2), _at(8, 8)
_ONE_BYTE = 1 << _at(16, 8)


def flock_request(kind: int, domid: int) -> bytes:
    """struct flock for the byte at *domid*, as ``struct.pack("hhxxxxqqixxxx",
    kind, SEEK_SET, domid, 1, 0)`` packs it, without importing struct (issue
    12): one integer, converted once (as quick as struct's pack)."""
    return (kind << _TYPE_AT | domid << _START_AT | _ONE_BYTE).to_bytes(32, _ORDER)


_CONFLICT = (errno.EAGAIN, errno.EACCES)
_OPEN = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW


class RangeLocks:
    """The lock file of one store, opened once per context."""

    def __init__(self, path: str, store: str) -> None:
        self._path = path
        self._fd = os.open(path, _OPEN, 0o600)
        self._store = store
        # Domids locked through a description this process shares with others.
        self._shared: dict[int, int] = {}

    def lock(self, domid: int, timeout: float) -> _HeldRange | _SharedRange:
        if self._shared and domid in self._shared:
            return _SHARED
        self._take(self._fd, domid, timeout)
        return _HeldRange(self._fd, domid)

    def hand_off(self, domid: int, timeout: float) -> _HandedRange:
        """Lock *domid* on a description of its own, for children to inherit."""
        fd = os.open(self._path, _OPEN, 0o600)
        try:
            self._take(fd, domid, timeout)
        except BaseException:
            os.close(fd)
            raise
        self._shared[domid] = fd
        return _HandedRange(self._shared, fd, domid)

    def adopt(self, fd: int, domid: int) -> _AdoptedRange | None:
        """The lock of *domid* held through the inherited *fd*, if *fd* is a
        description of this very lock file (another than ours) that holds it.

        The lock is tried through *fd* without waiting: it succeeds only when
        no other description holds it. An inherited description that holds
        it keeps it until its last copy is closed.
        """
        try:
            theirs, mine = os.fstat(fd), os.fstat(self._fd)
            if fd == self._fd or (theirs.st_dev, theirs.st_ino) != (mine.st_dev, mine.st_ino):
                return None
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, flock_request(fcntl.F_WRLCK, domid))
        except OSError:
            return None
        self._shared[domid] = fd
        return _AdoptedRange(fd)

    def _take(self, fd: int, domid: int, timeout: float) -> None:
        request = flock_request(fcntl.F_WRLCK, domid)
        # Tried once before any waiting machinery: a free lock is the usual case.
        if _tried(fd, request):
            return
        if not wait_for(lambda: _tried(fd, request), timeout):
            raise LockTimeout(
                f"the domain's lock is still held after {timeout:g} s", domain=domid, store=self._store
            )

    def close(self) -> None:
        """Close the lock file (every lock taken through it goes); once: the
        number may belong to another file of the program afterwards."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


def _tried(fd: int, request: bytes) -> bool:
    """Whether the lock *request* was granted without waiting."""
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
    except OSError as exc:
        if exc.errno not in _CONFLICT:
            raise
        return False
    return True


class _HeldRange:
    __slots__ = ("_domid", "_fd")

    def __init__(self, fd: int, domid: int) -> None:
        self._fd = fd
        self._domid = domid

    def release(self) -> None:
        fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, flock_request(fcntl.F_UNLCK, self._domid))

    # The lock is keyed by domid: nothing of an ended incarnation is left to remove.
    discard = release


class _SharedRange:
    """``lock`` of a domid held through a shared description: nothing to release."""

    __slots__ = ()

    def release(self) -> None:
        """The description's holders keep it."""

    discard = release


_SHARED = _SharedRange()


class _HandedRange:
    """A range lock on a description of its own: closing this process's copy
    releases it only if no child holds another."""

    __slots__ = ("_domid", "_shared", "fd")
    shared = True

    def __init__(self, shared: dict[int, int], fd: int, domid: int) -> None:
        self._shared = shared
        self.fd = fd
        self._domid = domid

    def check(self) -> None:
        """A lock held through a description cannot be lost."""

    def release(self) -> None:
        del self._shared[self._domid]
        os.close(self.fd)

    discard = release


class _AdoptedRange:
    """A range lock held through an inherited description: it cannot be lost."""

    __slots__ = ("fd",)
    shared = True

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def check(self) -> None:
        """A lock held through a description cannot be lost."""
