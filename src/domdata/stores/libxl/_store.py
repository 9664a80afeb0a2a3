"""``LibxlStore``: libxl's item files, its lock and the managed domains, in one directory."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Collection, Iterator, Sequence

from ..._boot import Boot
from ..._changes import Change, ChangeFeed, Listing
from ..._errors import CorruptItem, InvalidUserid, LeftBehind, LockTimeout, ReapRefused
from ..._types import Incarnation, Item
from ..._userid import is_userid
from ..._xen_view import XenView
from .._handoff import HandsOff
from ..base import Holdings, OneStepTable, SharedDirectory, StoreDescription, StoreOptions
from ._changes import LibxlFeed
from ._directory import Directory
from ._domains import LibxlDomains
from ._lock import LockFiles
from ._names import (
    LIBVIRT_XML,
    LIBXL_JSON,
    LOCK_USERID,
    READ,
    RECORD,
    SOURCE_FILE,
    Entry,
    incarnations_of,
    is_temp,
    item_name,
    key_of,
    of_kind,
    parse,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..._changes import Removal
    from .._handoff import AdoptedLock, HandedLock
    from ..base import HeldLock


class LibxlStore(SharedDirectory, HandsOff, ChangeFeed):
    """Items, locks and managed domains as libxl's files in one directory."""

    lock_names_incarnation = True

    def __init__(self, url: str, options: StoreOptions) -> None:
        self.url = url
        self._dir = Directory(url, options.durable)
        self.path = self._dir.path
        self._locks = LockFiles(self._dir)
        self._feed = LibxlFeed(self._dir, options.retention)
        self._lock_timeout = options.lock_timeout
        self._domains = LibxlDomains(
            self._dir,
            self._locks,
            get=self.get,
            put=self.put,
            delete=self.delete,
            files_of=self.files_of,
            drop=self.drop,
            lock_timeout=options.lock_timeout,
        )
        #: Following a boot, when it started: an item file changed before is of an earlier boot.
        self._started: float | None = None

    def follow_boot(self, boot: Boot) -> None:
        # libxl fixes the file names and writes no boot: the file's mtime says when it was written.
        self._started = boot.started

    def _of_earlier_boot(self, info: os.stat_result) -> bool:
        return self._started is not None and info.st_mtime < self._started

    def _name(self, kind: str, incarnation: Incarnation, userid: str) -> str:
        if "/" in userid or "\0" in userid:
            raise self._escaping(userid)
        return item_name(kind, incarnation, userid)

    def _escaping(self, userid: str) -> InvalidUserid:
        # The contract layer validated the userid; a '/' here would leave the directory.
        return InvalidUserid("a userid must not contain '/' or NUL", store=self.url, userid=userid)

    def lock(self, domid: int, uuid: str | None, timeout: float) -> HeldLock:
        if uuid is None:
            raise TypeError("the libxl store's lock is keyed by (domid, uuid)")
        return self._locks.lock(Incarnation(domid, uuid), timeout)

    def hand_off(self, domid: int, uuid: str | None, timeout: float) -> HandedLock:
        if uuid is None:
            raise TypeError("the libxl store's lock is keyed by (domid, uuid)")
        return self._locks.hand_off(Incarnation(domid, uuid), timeout)

    def adopt(self, fd: int, incarnation: Incarnation) -> AdoptedLock | None:
        return self._locks.adopt(fd, incarnation)

    def get(self, incarnation: Incarnation, userid: str) -> bytes | None:
        # _name inline (every retrieve's path): item_name("d", incarnation, userid).
        if "/" in userid or "\0" in userid:
            raise self._escaping(userid)
        name = f"userdata-d.{incarnation[0]}.{incarnation[1]}.{userid}"
        try:
            fd = os.open(name, READ, dir_fd=self._dir.fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise CorruptItem(
                    f"{name} is a symbolic link: domdata does not follow it",
                    store=self.url,
                    domain=incarnation,
                    userid=userid,
                ) from exc
            self._dir.fail(f"cannot open {name}", exc, incarnation, userid)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise CorruptItem(
                    f"{name} is not a regular file", store=self.url, domain=incarnation, userid=userid
                )
            if self._started is not None and info.st_mtime < self._started:
                return None  # of an earlier boot (inline: every retrieve's path)
            data = os.read(fd, info.st_size)
            while len(data) < info.st_size:
                more = os.read(fd, info.st_size - len(data))
                if not more:
                    break
                data += more
        except OSError as exc:
            self._dir.fail(f"cannot read {name}", exc, incarnation, userid)
        finally:
            os.close(fd)
        return data

    def put(self, incarnation: Incarnation, userid: str, data: bytes) -> None:
        temp = self._name("n", incarnation, userid)
        self._dir.write(temp, item_name("d", incarnation, userid), data, incarnation, userid)

    def delete(self, incarnation: Incarnation, userid: str) -> bool:
        name = self._name("d", incarnation, userid)
        try:
            if self._started is not None and self._stat(name, earlier=True) is not None:
                return False  # absent in this boot; reap collects it
            if not self._dir.unlink(name):
                return False
            self._dir.sync()
        except OSError as exc:
            self._dir.fail(f"cannot unlink {name}", exc, incarnation, userid)
        return True

    def items(self, incarnation: Incarnation | None) -> Sequence[Item]:
        if incarnation is None:
            entries = parse(of_kind("d", self._dir.listdir()))
        else:
            prefix = item_name("d", incarnation, "")
            names = self._dir.listdir()
            entries = [Entry(n, "d", incarnation, n[len(prefix) :]) for n in names if n.startswith(prefix)]
        return self._items(entries, earlier=False if incarnation is not None else None)

    def _stat(self, name: str, earlier: bool | None) -> os.stat_result | None:
        """The item file's status if it is a regular file (of an earlier boot,
        or of this one, or of any boot when *earlier* is None), else None."""
        try:
            info = os.stat(name, dir_fd=self._dir.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        if earlier is not None and self._of_earlier_boot(info) is not earlier:
            return None
        return info

    def _items(self, entries: Sequence[Entry], earlier: bool | None) -> list[Item]:
        items = []
        for entry in entries:
            if not is_userid(entry.rest):
                continue  # a file no call can name (a newline, a glob character...)
            info = self._stat(entry.name, earlier)
            if info is not None:
                items.append(Item(entry.incarnation.domid, entry.incarnation.uuid, entry.rest, info.st_size))
        items.sort(key=lambda item: (item.domid, item.uuid, item.userid))
        return items

    def earlier_boot(self) -> Sequence[Item]:
        if self._started is None:
            return []
        return self._items(parse(of_kind("d", self._dir.listdir())), earlier=True)

    def drop_earlier_boot(self, incarnations: Collection[Incarnation]) -> int:
        """Unlink these incarnations' item files of an earlier boot. The caller
        holds their locks, so no writer can rename a fresh file over one
        between its re-stat here and its unlink."""
        doomed = set(incarnations)
        if self._started is None or not doomed:
            return 0
        entries = [e for e in self.files_of(doomed) if e.kind == "d"]
        removed = 0
        try:
            for entry in entries:
                if self._stat(entry.name, earlier=True) is not None and self._dir.unlink(entry.name):
                    removed += 1
            if removed:
                self._dir.sync()
        except OSError as exc:
            self._dir.fail("cannot remove an earlier boot's files", exc)
        return removed

    def files_of(self, incarnations: Collection[Incarnation]) -> list[Entry]:
        """Every file of these incarnations, found in one scan of the directory."""
        keys = {f"{domid}.{uuid}" for domid, uuid in incarnations}
        # key_of() inlined: this sieve runs over the whole directory once per batch.
        names = [n for n in self._dir.listdir() if n[11 : n.find(".", 11) + 37] in keys]
        return [e for e in parse(names) if e.incarnation in incarnations]

    def drop(self, incarnations: Collection[Incarnation], op: Removal) -> int:
        """Unlink every file of these incarnations (one scan): items, temps, the
        managed record, then the lock files, each only while it is held. A
        file that cannot go stays with its incarnation's lock file, and the
        rest goes on: LeftBehind at the end says what stayed. (The files do
        not say why they went: the feed sees every removal as a ``delete``.)"""
        doomed = set(incarnations)
        if not doomed:
            return 0
        entries = self.files_of(doomed)
        removed = 0
        left: list[tuple[object, str, str]] = []
        for entry in entries:
            if entry.kind == "l":
                continue
            try:
                if self._dir.unlink(entry.name) and entry.kind == "d":
                    removed += 1
            except OSError as exc:
                path = os.path.join(self.path, entry.name)
                left.append((entry.incarnation, path, exc.strerror or str(exc)))
        stuck = {incarnation for incarnation, _, _ in left}
        try:
            for entry in entries:
                if entry.kind == "l" and entry.incarnation not in stuck:
                    self._locks.unlink_lock(entry)
            self._dir.sync()
        except OSError as exc:
            self._dir.fail("cannot remove a dead domain's files", exc)
        if left:
            raise LeftBehind(removed, left, store=self.url)
        return removed

    def incarnations(self) -> set[Incarnation]:
        return incarnations_of("d", self._dir.listdir())

    def sweep(self, dry_run: bool) -> list[str]:
        """Temp files no writer holds, and lock files of incarnations with no other file.

        Each incarnation is cleaned under its own lock, taken without waiting
        (every writer holds it while its temp exists); busy ones wait for the
        next reap. Lock files go the libxl way: unlinked while held, then closed.
        The listing is sieved by name, and only the candidates are parsed.
        """
        names = self._dir.listdir()
        # Incarnations with an item or a record keep their lock file.
        kept = {
            key_of(n)
            for n in names
            if n.startswith("userdata-d.") or (n.startswith("userdata-m.") and n.endswith(RECORD))
        }
        candidates: dict[Incarnation, list[Entry]] = {}
        for entry in parse(
            n for n in names if is_temp(n) or (n.startswith("userdata-l.") and key_of(n) not in kept)
        ):
            candidates.setdefault(entry.incarnation, []).append(entry)
        removed = self._domains.sweep(names, dry_run)
        if SOURCE_FILE + ".new" in names and (dry_run or self._dir.unlink(SOURCE_FILE + ".new")):
            removed.append(SOURCE_FILE + ".new")  # a binding's write that was killed
        for incarnation, mine in candidates.items():
            temps = [e for e in mine if e.kind != "l"]
            locks = [e for e in mine if e.kind == "l"]
            if dry_run:
                removed += [e.name for e in temps + locks]
            elif self._locks.held(incarnation) is None:
                removed += self._clean(incarnation, temps, locks, key_of(mine[0].name) in kept)
        return sorted(os.path.join(self.path, name) for name in removed)

    def _clean(
        self, incarnation: Incarnation, temps: list[Entry], locks: list[Entry], kept: bool
    ) -> list[str]:
        try:
            held = self._locks.lock(incarnation, 0)
        except LockTimeout:
            return []
        try:
            with self._dir.locked(self._lock_timeout):
                removed = [e.name for e in temps if self._dir.unlink(e.name)]
            removed += [e.name for e in locks if self._locks.unlink_lock(e)]
            if not kept and not held.doomed:
                # Taking the lock created its file: nothing is left to guard.
                self._dir.unlink(item_name("l", incarnation, LOCK_USERID))
                held.doomed = True
            self._dir.sync()
        except OSError as exc:
            self._dir.fail("cannot remove leftover files", exc, incarnation)
        finally:
            held.release()
        return removed

    def check_reap(self, xen_view: XenView) -> None:
        """Refuse to reap a directory shared with libxl unless the source can vouch
        for every domain libxl created there.

        A ``libxl-json`` item means libxl created that domain. Only Xen knows
        whether it still runs, and libvirt (``libvirt:xen:///system``) sees
        only the domains libvirt created, which carry a ``libvirt-xml`` item:
        a domain started with ``xl create`` would look dead to it.
        """
        made_by_libxl, made_by_libvirt = set(), set()
        suffixes = (f".{LIBXL_JSON}", f".{LIBVIRT_XML}")
        names = self._dir.listdir()
        for entry in parse(n for n in names if n.endswith(suffixes) and n.startswith("userdata-d.")):
            if entry.rest == LIBXL_JSON:
                made_by_libxl.add(entry.incarnation)
            elif entry.rest == LIBVIRT_XML:
                made_by_libvirt.add(entry.incarnation)
        if not made_by_libxl:
            return
        if xen_view is XenView.NONE:
            raise ReapRefused(
                f"{self.path} holds domains libxl created (e.g. domain {min(made_by_libxl)}); only Xen knows "
                "which are dead: reap with the domain source xen or libvirt:xen:///system "
                "(or force it: --force)",
                store=self.url,
            )
        unseen = made_by_libxl - made_by_libvirt
        if xen_view is XenView.LIBVIRT and unseen:
            raise ReapRefused(
                f"{self.path} holds domains created outside libvirt (e.g. domain {min(unseen)}, no "
                f"{LIBVIRT_XML} item: xl create?); libvirt cannot see them, so it cannot say they "
                "died: reap with the domain source xen (--force reaps them as dead)",
                store=self.url,
            )

    def domain_table(self) -> OneStepTable:
        return self._domains

    def changes(self, domid: int | None, since: int | None, follow: bool) -> Iterator[Change]:
        return self._feed.changes(domid, since, follow)

    def listing(self, incarnation: Incarnation | None, all_hosts: bool) -> Listing:
        return self._feed.listing(lambda: self.items(incarnation))

    def bound_source(self) -> str | None:
        try:
            fd = os.open(SOURCE_FILE, READ, dir_fd=self._dir.fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._dir.fail(f"cannot read {SOURCE_FILE}", exc)
        try:
            text = os.read(fd, 4096)
        except OSError as exc:
            self._dir.fail(f"cannot read {SOURCE_FILE}", exc)
        finally:
            os.close(fd)
        return text.decode("utf-8", "replace").strip() or None

    def bind_source(self, spec: str) -> None:
        self._dir.write(SOURCE_FILE + ".new", SOURCE_FILE, spec.encode() + b"\n")

    def holdings(self) -> Holdings:
        names = self._dir.listdir()
        return Holdings(
            any(n.startswith("userdata-d.") for n in names),
            any(n.startswith("userdata-m.") and n.endswith(RECORD) for n in names),
        )

    def describe(self) -> StoreDescription:
        return StoreDescription(self.path, None)

    def close(self) -> None:
        self._feed.close()
        self._locks.close()
        self._dir.close()
