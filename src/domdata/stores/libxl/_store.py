"""``LibxlStore``: libxl's item files, its lock and the managed domains, in one directory."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Collection, Sequence

from ..._errors import CorruptItem, InvalidUserid, LockTimeout, ReapRefused
from ..._types import Incarnation, Item, XenView
from .._handoff import AdoptedLock, HandedLock, HandsOff
from ..base import DomainTable, HeldLock, SharedDirectory, StoreOptions
from ._directory import Directory
from ._domains import LibxlDomains
from ._lock import LockFiles
from ._names import (
    LIBVIRT_XML,
    LIBXL_JSON,
    LOCK_USERID,
    READ,
    RECORD,
    RECORD_SUFFIX,
    Entry,
    is_temp,
    item_name,
    key_of,
    of_kind,
    parse,
)


class LibxlStore(SharedDirectory, HandsOff):
    """Items, locks and managed domains as libxl's files in one directory."""

    lock_names_incarnation = True

    def __init__(self, url: str, options: StoreOptions) -> None:
        self.url = url
        self._dir = Directory(url, options.durable)
        self.path = self._dir.path
        self._locks = LockFiles(self._dir)
        self._lock_timeout = options.lock_timeout
        self._domains = LibxlDomains(self._dir, self.drop, options.lock_timeout)

    def _name(self, kind: str, incarnation: Incarnation, userid: str) -> str:
        # The contract layer validated the userid; a '/' here would leave the directory.
        if "/" in userid or "\0" in userid:
            raise InvalidUserid("a userid must not contain '/' or NUL", store=self.url, userid=userid)
        return item_name(kind, incarnation, userid)

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
        name = self._name("d", incarnation, userid)
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
        items = []
        for entry in entries:
            try:
                info = os.stat(entry.name, dir_fd=self._dir.fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode):
                items.append(Item(entry.incarnation.domid, entry.incarnation.uuid, entry.rest, info.st_size))
        items.sort(key=lambda item: (item.domid, item.uuid, item.userid))
        return items

    def drop(self, incarnations: Collection[Incarnation]) -> int:
        """Unlink every file of these incarnations (one scan): items, temps, the
        managed record, then the lock files, each only while it is held."""
        doomed = set(incarnations)
        if not doomed:
            return 0
        keys = {f"{domid}.{uuid}" for domid, uuid in doomed}
        # key_of() inlined: this sieve runs over the whole directory once per batch.
        names = [n for n in self._dir.listdir() if n[11 : n.find(".", 11) + 37] in keys]
        entries = [e for e in parse(names) if e.incarnation in doomed]
        removed = 0
        try:
            for entry in entries:
                if entry.kind != "l" and self._dir.unlink(entry.name) and entry.kind == "d":
                    removed += 1
            for entry in entries:
                if entry.kind == "l":
                    self._locks.unlink_lock(entry)
            self._dir.sync()
        except OSError as exc:
            self._dir.fail("cannot remove a dead domain's files", exc)
        return removed

    def incarnations(self) -> set[Incarnation]:
        return {e.incarnation for e in parse(of_kind("d", self._dir.listdir()))}

    def sweep(self, dry_run: bool) -> list[str]:
        """Temp files no writer holds, and lock files of incarnations with no other file.

        Each incarnation is cleaned under its own lock, taken without waiting
        (every writer holds it while its temp exists); busy ones wait for the
        next reap. Lock files go the libxl way: unlinked while held, then closed.
        """
        names = self._dir.listdir()
        groups: dict[str, list[str]] = {}
        for name in names:
            if name.startswith("userdata-"):
                groups.setdefault(key_of(name), []).append(name)
        removed = self._domains.sweep(names, dry_run)
        for group in groups.values():
            if not any(map(is_temp, group)) and any(n[9:10] == "d" or n.endswith(RECORD) for n in group):
                continue  # the common case, sieved without parsing
            mine = parse(group)
            if not mine:
                continue
            incarnation = mine[0].incarnation
            temps = [e for e in mine if e.kind == "n" or (e.kind == "m" and e.rest != RECORD_SUFFIX)]
            kept = any(e.kind == "d" or (e.kind == "m" and e.rest == RECORD_SUFFIX) for e in mine)
            locks = [] if kept else [e for e in mine if e.kind == "l"]
            if not temps and not locks:
                continue
            if dry_run:
                removed += [e.name for e in temps + locks]
            elif self._locks.held(incarnation) is None:
                removed += self._clean(incarnation, temps, locks, kept)
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
        for entry in parse(of_kind("d", self._dir.listdir())):
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

    def domain_table(self) -> DomainTable:
        return self._domains

    def close(self) -> None:
        self._locks.close()
        self._dir.close()
