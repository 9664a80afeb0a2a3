"""The change feed of the libxl store: libxl's own files, watched with inotify.

libxl keeps no log, so the feed is what a watching process sees happen to the
item files (``userdata-d.*``) of the directory, whoever changes them: libxl,
``xl``, libvirt's libxl driver, domdata in any process. A file renamed into
place or closed after writing is a ``store`` (its size read then); a file
unlinked or renamed away is a ``delete``. The files do not say why one went,
so ``destroy`` and ``reap`` also appear as ``delete``. Temporary and lock
files are ignored.

Revisions cannot outlive the process: they are numbered by the store object
(one per context) from the first time it is asked for changes or for a
revision (``list``), in an epoch chosen at random then: revision =
epoch * 2**32 + n. The feed is the changes seen since, kept in memory (the
last ``Retention.changes``). A ``since`` from another epoch (another process,
an earlier run) or older than what is kept is ChangesLost naming the oldest
revision this one can give; so is a follower that was behind when the kernel's
event queue overflowed. Without ``follow``, ``changes()`` gives the changes
seen so far, which is nothing before the first call.

List, then follow: the watch starts before the directory is read, so no
change is missed; a change racing the listing may be both in the listing and
in the feed after it (at least once at that boundary, not exactly once).

Closing the store wakes a follower waiting for events (``_closing``); the
watch and the directory are closed only once no follower is reading them.
"""

from __future__ import annotations

import os
import random
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence

from ..._changes import Change, Listing, Retention
from ..._errors import ChangesLost
from ..._inotify import (
    IN_CLOSE_WRITE,
    IN_DELETE,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_Q_OVERFLOW,
    DirectoryWatch,
)
from ..._types import Item
from .._closing import Closing
from ._directory import Directory
from ._names import parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..._changes import ChangeOp

_EPOCH = 2**32
_STORED = IN_CLOSE_WRITE | IN_MOVED_TO
_REMOVED = IN_DELETE | IN_MOVED_FROM


class _Log:
    """The changes one store object has seen in its directory."""

    def __init__(self, path: str, directory_fd: int, closing: Closing, keep: int) -> None:
        self._closing = closing
        self._watch = DirectoryWatch(path, _STORED | _REMOVED, closing)
        self._dir = directory_fd
        self._url = closing.url
        self.epoch = random.randrange(1, 2**20) * _EPOCH
        self.changes: deque[Change] = deque(maxlen=keep)
        self.newest = self.epoch
        #: The newest revision before the kernel's event queue overflowed (some
        #: changes after it were never seen), or None.
        self.gap: int | None = None
        self._pumping = threading.Lock()

    def pump(self, timeout: float | None) -> None:
        """Turn the events that arrive within *timeout* seconds (None: until
        some do, or the store closes) into changes. The wait takes no lock: a
        listing or another follower of the store goes on meanwhile."""
        self._watch.ready(timeout)
        with self._pumping:
            if self._closing.closed:
                return  # the directory's descriptor is closed, or about to be
            for mask, name in self._watch.read():
                if mask & IN_Q_OVERFLOW:
                    self.gap = self.newest
                    continue
                entries = parse([name]) if name.startswith("userdata-d.") else []
                if not entries:
                    continue
                incarnation, userid = entries[0].incarnation, entries[0].rest
                size = None
                if mask & _STORED:
                    size = self._size(name)
                    if size is None:
                        continue  # gone already: its removal comes next
                self.newest += 1
                op: ChangeOp = "delete" if size is None else "store"
                self.changes.append(
                    Change(self.newest, op, None, incarnation.domid, incarnation.uuid, userid, size)
                )

    def _size(self, name: str) -> int | None:
        try:
            info = os.stat(name, dir_fd=self._dir, follow_symlinks=False)
        except OSError:
            return None
        return info.st_size if stat.S_ISREG(info.st_mode) else None

    def check(self, since: int) -> None:
        """ChangesLost unless every change after *since* is here."""
        oldest = self.changes[0].rev if self.changes else self.newest + 1
        overflowed = self.gap is not None and since <= self.gap
        if overflowed and self.gap is not None:
            oldest = max(oldest, self.gap + 1)
        if overflowed or since < oldest - 1 or since > self.newest:
            if since // _EPOCH != self.epoch // _EPOCH:
                what = (
                    f"revision {since} is not from this process's watch of the directory"
                    " (libxl revisions last as long as the process)"
                )
            elif overflowed:
                what = f"the kernel's event queue overflowed after revision {since}: changes were missed"
            else:
                what = f"the changes after revision {since} are no longer kept (oldest available: {oldest})"
            raise ChangesLost(
                what + "; list again, then follow from the list's revision",
                since=since,
                oldest=oldest,
                store=self._url,
            )

    def after(self, last: int) -> list[Change]:
        if not self.changes or self.changes[-1].rev <= last:
            return []
        start = max(0, last + 1 - self.changes[0].rev)
        return [self.changes[n] for n in range(start, len(self.changes))]

    def close(self) -> None:
        """Once the store is closing: after the pump in progress, which may read the directory."""
        with self._pumping:
            self._watch.close()


class LibxlFeed:
    """The change feed of one libxl store object: the log of what its watch of
    the directory saw, started the first time it is asked for."""

    def __init__(self, directory: Directory, retention: Retention | None) -> None:
        self._dir = directory
        self._retention = retention
        self._log: _Log | None = None
        self._closing = Closing(directory.url)

    def _started(self) -> _Log:
        if self._log is None:
            keep = (self._retention or Retention()).changes
            self._log = _Log(self._dir.path, self._dir.fd, self._closing, keep)
        return self._log

    def listing(self, items: Callable[[], Sequence[Item]]) -> Listing:
        log = self._started()
        log.pump(0)
        rev = log.newest
        return Listing(items(), rev)

    def changes(self, domid: int | None, since: int | None, follow: bool) -> Iterator[Change]:
        log = self._started()
        log.pump(0)
        if since is None:
            since = log.changes[0].rev - 1 if log.changes else log.newest
        log.check(since)
        return self._follow(log, domid, since, follow)

    def _follow(self, log: _Log, domid: int | None, last: int, follow: bool) -> Iterator[Change]:
        closing = self._closing
        while True:
            closing.check()
            log.check(last)
            found = log.after(last)
            for change in found:
                last = change.rev
                if domid is None or change.domid == domid:
                    yield change
                    closing.check()
            if found:
                continue
            if not follow:
                return
            log.pump(None)

    def close(self) -> None:
        """The store closes: every feed read from it ends (a follower waiting
        wakes), then the watch is closed."""
        self._closing.close()
        if self._log is not None:
            self._log.close()
