"""How closing a store ends the change feeds being read from it, from any thread.

A follower sleeps in poll(2) on what tells it of new changes (inotify, the
server's socket). It polls the store's ``Closing`` beside it: an eventfd that
becomes readable, and stays so, when the store closes. The follower then
lets go of what it holds, in its own thread, and raises StoreUnavailable, as
every call on the closed context does; so does a feed read on after close.
Closing never closes a descriptor a follower may be polling: by then its
number could name another file of the program.
"""

from __future__ import annotations

import os
from _thread import allocate_lock

from .._errors import StoreUnavailable


class Closing:
    """Whether a store is closed, and a descriptor for followers to poll."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.closed = False
        self._fd = -1
        self._mutex = allocate_lock()

    def fd(self) -> int:
        """The descriptor, readable once the store is closed; made on first use
        (a store nobody follows has none), open for as long as this object."""
        with self._mutex:
            if self._fd < 0:
                import weakref  # only for a follower

                self._fd = os.eventfd(int(self.closed), os.EFD_CLOEXEC | os.EFD_NONBLOCK)
                weakref.finalize(self, os.close, self._fd)
            return self._fd

    def sleep(self, seconds: float) -> None:
        """Wait *seconds*, or less if the store closes meanwhile."""
        import select

        poller = select.poll()
        poller.register(self.fd(), select.POLLIN)
        poller.poll(int(seconds * 1000))

    def check(self) -> None:
        """StoreUnavailable if the store is closed."""
        if self.closed:
            raise StoreUnavailable.closed(self.url)

    def close(self) -> None:
        """Mark the store closed and wake every follower."""
        with self._mutex:
            self.closed = True
            if self._fd >= 0:
                os.eventfd_write(self._fd, 1)
