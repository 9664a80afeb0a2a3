"""Linux inotify through ctypes (no dependency): wake when files in a directory change.

Loaded only by a follower of the change feed, never by ``import domdata``.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import threading
import weakref

from ._errors import StoreUnavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .stores._closing import Closing

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_Q_OVERFLOW = 0x00004000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")


class DirectoryWatch:
    """Events (mask, file name) for the files of one directory; a wait also
    ends when the store (its *closing*) closes. It may be closed from any
    thread: its descriptor is closed once no thread polls or reads it."""

    def __init__(self, directory: str, mask: int, closing: Closing) -> None:
        store = closing.url
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            init, add = libc.inotify_init1, libc.inotify_add_watch
        except (OSError, AttributeError) as exc:
            raise StoreUnavailable(f"following changes needs Linux inotify ({exc})", store=store) from exc
        add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        fd = init(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise StoreUnavailable(f"inotify_init1: {os.strerror(err)}", store=store)
        if add(fd, os.fsencode(directory), mask) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise StoreUnavailable(f"cannot watch {directory}: {os.strerror(err)}", store=store)
        self._fd = fd
        # Closed with the object too: a feed that is never iterated still lets go.
        self._close = weakref.finalize(self, os.close, fd)
        # Held, so that its descriptor stays open while this watch polls it.
        self._closing = closing
        self._wake = closing.fd()
        self._mutex = threading.Lock()
        self._users = 0
        self._closed = False

    def _enter(self) -> bool:
        with self._mutex:
            if self._closed:
                return False
            self._users += 1
            return True

    def _leave(self) -> None:
        with self._mutex:
            self._users -= 1
            if self._closed and not self._users:
                self._close()

    def ready(self, timeout: float | None) -> None:
        """Wait until there are events to read, *timeout* seconds at most
        (None: no limit), or the store closes."""
        if self._enter():
            try:
                poller = select.poll()  # one per wait: threads of a store may wait at once
                poller.register(self._fd, select.POLLIN)
                poller.register(self._wake, select.POLLIN)
                poller.poll(None if timeout is None else max(0, int(timeout * 1000)))
            finally:
                self._leave()

    def read(self) -> list[tuple[int, str]]:
        """The events there are, without waiting; an overflow is reported as
        ``(IN_Q_OVERFLOW, "")``. Nothing once closed."""
        if not self._enter():
            return []
        try:
            return self._events()
        finally:
            self._leave()

    def _events(self) -> list[tuple[int, str]]:
        events: list[tuple[int, str]] = []
        while True:
            try:
                buffer = os.read(self._fd, 65536)
            except BlockingIOError:
                return events
            offset = 0
            while offset < len(buffer):
                _wd, mask, _cookie, length = _EVENT.unpack_from(buffer, offset)
                offset += _EVENT.size
                name = buffer[offset : offset + length].split(b"\0", 1)[0]
                offset += length
                events.append((mask, os.fsdecode(name)))

    def wait(self, timeout: float | None) -> list[tuple[int, str]]:
        """The events that arrive within *timeout* seconds (None: until some
        do, or the store closes)."""
        self.ready(timeout)
        return self.read()

    def close(self) -> None:
        """Closed now, or by the last thread still polling or reading it."""
        with self._mutex:
            self._closed = True
            if not self._users:
                self._close()
