"""``LibxlStore``: the directory, its plumbing, and the item operations.

The lock methods come from ``_Locks`` (``_lock.py``), the managed domain
table and fast path from ``_domains.py``.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import OrderedDict
from collections.abc import Collection, Sequence
from typing import NoReturn

from ..._errors import CorruptItem, InvalidUserid, LockTimeout, ReapRefused, StoreUnavailable
from ..._types import Incarnation, Item
from ..base import DomainTable, ManagedOps, Store, StoreOptions
from ._changes import LibxlChangeFeed
from ._domains import _LibxlDomains, _ManagedOps
from ._lock import _LockFile, _Locks
from ._names import (
    _CREATE,
    _READ,
    _RECORD,
    LIBVIRT_XML,
    LIBXL_JSON,
    LOCK_USERID,
    RECORD_SUFFIX,
    _Entry,
    _is_temp,
    _key,
    _of_kind,
    _parse,
    dir_of,
    is_xen_authority,
    item_name,
)


class LibxlStore(LibxlChangeFeed, _Locks, Store):
    """Items, locks and managed domains as libxl's files in one directory."""

    lock_needs_uuid = True

    def __init__(self, url: str, options: StoreOptions) -> None:
        self.url = url
        self.path = dir_of(url)
        self._durable = options.durable
        self._retention = options.retention
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            self._dir = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot open the directory {self.path}: {exc.strerror}", store=url
            ) from exc
        self._kept: OrderedDict[Incarnation, _LockFile] = OrderedDict()
        self._held: dict[Incarnation, _LockFile] = {}
        self._domains = _LibxlDomains(self)

    # -- plumbing ----------------------------------------------------------

    def _fail(
        self, what: str, exc: OSError, incarnation: object = None, userid: str | None = None
    ) -> NoReturn:
        if exc.errno == errno.ELOOP:
            what += " (a symbolic link: domdata never follows links in the store; remove it)"
        raise StoreUnavailable(
            f"{what}: {exc.strerror}", store=self.url, domain=incarnation, userid=userid
        ) from exc

    def _listdir(self) -> list[str]:
        try:
            return os.listdir(self._dir)
        except OSError as exc:
            self._fail(f"cannot read the directory {self.path}", exc)

    def _unlink(self, name: str) -> bool:
        try:
            os.unlink(name, dir_fd=self._dir)
        except FileNotFoundError:
            return False
        return True

    def _sync_dir(self) -> None:
        if self._durable:
            os.fsync(self._dir)

    def _name(self, kind: str, incarnation: Incarnation, userid: str) -> str:
        # The contract layer validated the userid; a '/' here would leave the directory.
        if "/" in userid or "\0" in userid:
            raise InvalidUserid("a userid must not contain '/' or NUL", store=self.url, userid=userid)
        return item_name(kind, incarnation, userid)

    # -- the lock: ``lock`` and its helpers are _Locks' (_lock.py) ----------

    # -- items -------------------------------------------------------------

    def get(self, incarnation: Incarnation, userid: str) -> bytes | None:
        name = self._name("d", incarnation, userid)
        try:
            fd = os.open(name, _READ, dir_fd=self._dir)
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
            self._fail(f"cannot open {name}", exc, incarnation, userid)
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
            self._fail(f"cannot read {name}", exc, incarnation, userid)
        finally:
            os.close(fd)
        if not data:
            raise CorruptItem(
                f"{name} is empty: a torn write (libxl refuses it too)",
                store=self.url,
                domain=incarnation,
                userid=userid,
            )
        return data

    def put(self, incarnation: Incarnation, userid: str, data: bytes) -> None:
        temp = self._name("n", incarnation, userid)
        self._write(temp, item_name("d", incarnation, userid), data, incarnation, userid)

    def _write(
        self, temp: str, final: str, data: bytes, incarnation: Incarnation, userid: str | None
    ) -> None:
        """Write *data* to a fresh *temp* (0600), fsync, rename over *final*, fsync the directory."""
        directory = self._dir
        try:
            try:
                fd = os.open(temp, _CREATE, 0o600, dir_fd=directory)
            except FileExistsError:
                # Debris of a killed writer, or a planted link: unlink never follows.
                os.unlink(temp, dir_fd=directory)
                fd = os.open(temp, _CREATE, 0o600, dir_fd=directory)
        except OSError as exc:
            self._fail(f"cannot create {temp}", exc, incarnation, userid)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self._durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, final, src_dir_fd=directory, dst_dir_fd=directory)
        except OSError as exc:
            self._unlink(temp)
            self._fail(f"cannot write {final}, the old one is intact", exc, incarnation, userid)
        try:
            self._sync_dir()
        except OSError as exc:
            self._fail(
                f"{final} was replaced but the directory could not be synced", exc, incarnation, userid
            )

    def delete(self, incarnation: Incarnation, userid: str) -> bool:
        name = self._name("d", incarnation, userid)
        try:
            if not self._unlink(name):
                return False
            self._sync_dir()
        except OSError as exc:
            self._fail(f"cannot unlink {name}", exc, incarnation, userid)
        return True

    def items(self, incarnation: Incarnation | None) -> Sequence[Item]:
        if incarnation is None:
            entries = _parse(_of_kind("d", self._listdir()))
        else:
            prefix = item_name("d", incarnation, "")
            entries = [
                _Entry(n, "d", incarnation, n[len(prefix) :]) for n in self._listdir() if n.startswith(prefix)
            ]
        items = []
        for entry in entries:
            try:
                info = os.stat(entry.name, dir_fd=self._dir, follow_symlinks=False)
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
        # _key() inlined: this sieve runs over the whole directory once per batch.
        names = [n for n in self._listdir() if n[11 : n.find(".", 11) + 37] in keys]
        entries = [e for e in _parse(names) if e.incarnation in doomed]
        removed = 0
        try:
            for entry in entries:
                if entry.kind != "l" and self._unlink(entry.name) and entry.kind == "d":
                    removed += 1
            for entry in entries:
                if entry.kind == "l":
                    self._unlink_lock(entry)
            self._sync_dir()
        except OSError as exc:
            self._fail("cannot remove a dead domain's files", exc)
        return removed

    def incarnations(self) -> set[Incarnation]:
        return {e.incarnation for e in _parse(_of_kind("d", self._listdir()))}

    def leftovers(self, dry_run: bool) -> list[str]:
        """Temp files no writer holds, and lock files of incarnations with no other file.

        Each incarnation is cleaned under its own lock, taken without waiting
        (every writer holds it while its temp exists); busy ones wait for the
        next reap. Lock files go the libxl way: unlinked while held, then closed.
        """
        names = self._listdir()
        groups: dict[str, list[str]] = {}
        for name in names:
            if name.startswith("userdata-"):
                groups.setdefault(_key(name), []).append(name)
        removed = self._domains.leftovers(names, dry_run)
        for group in groups.values():
            if not any(map(_is_temp, group)) and any(n[9:10] == "d" or n.endswith(_RECORD) for n in group):
                continue  # the common case, sieved without parsing
            mine = _parse(group)
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
            elif incarnation not in self._held:
                removed += self._clean(incarnation, temps, locks, kept)
        return sorted(os.path.join(self.path, name) for name in removed)

    def _clean(
        self, incarnation: Incarnation, temps: list[_Entry], locks: list[_Entry], kept: bool
    ) -> list[str]:
        try:
            held = self.lock(incarnation.domid, incarnation.uuid, 0)
        except LockTimeout:
            return []
        assert isinstance(held, _LockFile)
        try:
            with self._domains.locked():
                removed = [e.name for e in temps if self._unlink(e.name)]
            removed += [e.name for e in locks if self._unlink_lock(e)]
            if not kept and not held.doomed:
                # Taking the lock created its file: nothing is left to guard.
                self._unlink(item_name("l", incarnation, LOCK_USERID))
                held.doomed = True
            self._sync_dir()
        except OSError as exc:
            self._fail("cannot remove leftover files", exc, incarnation)
        finally:
            held.release()
        return removed

    def check_reap(self, source: str) -> None:
        """Refuse to reap a directory shared with libxl unless the source can vouch
        for every domain libxl created there.

        A ``libxl-json`` item means libxl created that domain. Only Xen knows
        whether it still runs, and libvirt (``libvirt:xen:///system``) sees
        only the domains libvirt created, which carry a ``libvirt-xml`` item:
        a domain started with ``xl create`` would look dead to it.
        """
        made_by_libxl, made_by_libvirt = set(), set()
        for entry in _parse(_of_kind("d", self._listdir())):
            if entry.rest == LIBXL_JSON:
                made_by_libxl.add(entry.incarnation)
            elif entry.rest == LIBVIRT_XML:
                made_by_libvirt.add(entry.incarnation)
        if not made_by_libxl:
            return
        if not is_xen_authority(source):
            raise ReapRefused(
                f"{self.path} holds domains libxl created (e.g. domain {min(made_by_libxl)}); only Xen knows "
                f"which are dead: reap with the domain source libvirt:xen:///system, not {source} "
                "(or force it: --force)",
                store=self.url,
            )
        unseen = made_by_libxl - made_by_libvirt
        if unseen:
            raise ReapRefused(
                f"{self.path} holds domains created outside libvirt (e.g. domain {min(unseen)}, no "
                f"{LIBVIRT_XML} item: xl create?); {source} cannot see them, so it cannot say they "
                "died (--force reaps them as dead)",
                store=self.url,
            )

    def domain_table(self) -> DomainTable:
        return self._domains

    def managed_ops(self) -> ManagedOps:
        return _ManagedOps(self)

    def close(self) -> None:
        self.close_feed()
        for lock in list(self._held.values()):
            os.close(lock.fd)
        self._held.clear()
        while self._kept:
            os.close(self._kept.popitem()[1].fd)
        if self._dir >= 0:
            os.close(self._dir)
            self._dir = -1
