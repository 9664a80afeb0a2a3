"""The managed domain table as libxl-style files, and the managed fast path.

``_LibxlDomains`` keeps each managed domain as a record file beside its
items; ``_ManagedOps`` locks, checks the record and acts in one call.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ..._errors import DomainExists, DomainNotFound
from ..._types import Domain, Incarnation
from ..base import DomainTable, HeldLock, ManagedOps
from ._names import _READ, INDEX_PREFIX, RECORD_SUFFIX, _Entry, _of_kind, _parse, record_name

if TYPE_CHECKING:
    from ._store import LibxlStore


class _LibxlDomains(DomainTable):
    """Managed domains as ``userdata-m.<domid>.<uuid>.domdata-domain`` files.

    ``domdata-domid.<domid>``, a symbolic link whose text is the record's name,
    finds a domid's record without a scan; it is written before the record, so
    every record has one, and one whose record is gone (libxl destroyed the
    domain) means no domain, until ``reap`` removes it. Creating a domain holds
    an flock on the directory itself: checking that the domid and name are
    free, and writing, are one step.
    """

    def __init__(self, store: LibxlStore) -> None:
        self._store = store
        #: domid -> the domain last read and its record's name, trusted while the
        #: record exists: (domid, uuid) are in the name, and a record's name never
        #: changes (only a record removed and re-created for the very same
        #: incarnation under a new name would be missed).
        self._cache: dict[int, tuple[Domain, str]] = {}

    def locked(self) -> _DirectoryLock:
        return _DirectoryLock(self._store._dir)

    def add(self, domid: int | None, uuid: str, name: str | None) -> Domain:
        store = self._store
        with self.locked():
            records = self._scan()
            taken = {r.domid for r in records}
            if domid is None:
                domid = next(n for n in range(1, len(taken) + 2) if n not in taken)
            elif domid in taken:
                raise DomainExists("a domain with this domid exists", store=store.url, domain=domid)
            if name is not None and any(r.name == name for r in records):
                raise DomainExists(f"a domain named {name!r} exists", store=store.url, domain=domid)
            domain = Domain(domid, uuid, name)
            final = record_name(domain.incarnation)
            index = f"{INDEX_PREFIX}{domid}"
            try:
                store._unlink(index + ".new")
                os.symlink(final, index + ".new", dir_fd=store._dir)
                os.rename(index + ".new", index, src_dir_fd=store._dir, dst_dir_fd=store._dir)
            except OSError as exc:
                store._fail(f"cannot write {index}", exc, domain.incarnation)
            content = json.dumps({"name": name}).encode() + b"\n"
            store._write(final + ".new", final, content, domain.incarnation, None)
        self._cache.pop(domid, None)
        return domain

    def remove(self, incarnation: Incarnation) -> int:
        # The record goes first: a crash before the items go leaves a dead
        # incarnation's data, which reap collects; never a live domain missing some.
        self._cache.pop(incarnation.domid, None)
        try:
            self._store._unlink(record_name(incarnation))
        except OSError as exc:
            self._store._fail("cannot remove the domain's record", exc, incarnation)
        return self._store.drop([incarnation])

    def get(self, domid: int) -> Domain | None:
        cached = self._cache.get(domid)
        if cached is not None:
            if os.access(cached[1], os.F_OK, dir_fd=self._store._dir, follow_symlinks=False):
                return cached[0]
            del self._cache[domid]
        try:
            target = os.readlink(f"{INDEX_PREFIX}{domid}", dir_fd=self._store._dir)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._store._fail(f"cannot read {INDEX_PREFIX}{domid}", exc, domid)
        found = [d for d in self._read(_parse([target])) if d.domid == domid]
        if not found:
            return None
        self._cache[domid] = (found[0], record_name(found[0].incarnation))
        return found[0]

    def hint(self, domid: int) -> Domain | None:
        """The domain last seen with this domid, unchecked: to be confirmed under its lock."""
        cached = self._cache.get(domid)
        return cached[0] if cached is not None else self.get(domid)

    def leftovers(self, names: Iterable[str], dry_run: bool) -> list[str]:
        """Index links whose record is gone, and half-made ones (under the directory lock)."""
        store = self._store
        indexes = [n for n in names if n.startswith(INDEX_PREFIX)]
        if not indexes:
            return []
        removed = []
        with self.locked():
            for name in indexes:
                try:
                    target = os.readlink(name, dir_fd=store._dir)
                except OSError:
                    continue
                if not name.endswith(".new") and os.access(
                    target, os.F_OK, dir_fd=store._dir, follow_symlinks=False
                ):
                    continue
                if dry_run or store._unlink(name):
                    removed.append(name)
        return removed

    def with_uuid(self, uuid: str) -> Sequence[Domain]:
        return [d for d in self._scan() if d.uuid == uuid]

    def with_name(self, name: str) -> Domain | None:
        return next((d for d in self._scan() if d.name == name), None)

    def all(self) -> Sequence[Domain]:
        return self._scan()

    def _scan(self) -> list[Domain]:
        return self._read(_parse(_of_kind("m", self._store._listdir())))

    def _read(self, entries: Iterable[_Entry]) -> list[Domain]:
        """The domains recorded among *entries*, by domid; records that vanish meanwhile are skipped."""
        store = self._store
        domains = []
        for entry in entries:
            if entry.kind != "m" or entry.rest != RECORD_SUFFIX:
                continue
            try:
                fd = os.open(entry.name, _READ, dir_fd=store._dir)
            except FileNotFoundError:
                continue
            except OSError as exc:
                store._fail(f"cannot read the domain record {entry.name}", exc, entry.incarnation)
            try:
                raw = os.read(fd, 65536)
            except OSError as exc:
                store._fail(f"cannot read the domain record {entry.name}", exc, entry.incarnation)
            finally:
                os.close(fd)
            try:
                name = json.loads(raw)["name"]
            except (ValueError, TypeError, KeyError):
                name = None
            domains.append(Domain(*entry.incarnation, name if isinstance(name, str) else None))
        domains.sort(key=lambda d: (d.domid, d.uuid))
        return domains


class _ManagedOps(ManagedOps):
    """Managed calls with one record check, made under the lock (DESIGN: check after lock)."""

    def __init__(self, store: LibxlStore) -> None:
        self._store = store
        self._domains = store._domains

    def _acquire(self, domid: int, timeout: float) -> tuple[Incarnation, HeldLock]:
        store, domains = self._store, self._domains
        while True:
            domain = domains.hint(domid)
            if domain is None:
                raise DomainNotFound("no live domain (source managed)", domain=domid, store=store.url)
            lock = store.lock(domid, domain.uuid, timeout)
            try:
                confirmed = domains.get(domid) is domain  # the cached record, still there
            except BaseException:
                lock.release()
                raise
            if confirmed:
                return domain.incarnation, lock
            # Destroyed (or reborn) between the look-up and the lock: its lock
            # file guards nothing now; unlink it while held, and look again.
            store._discard(lock)

    def get(self, domid: int, userid: str, timeout: float) -> bytes | None:
        incarnation, lock = self._acquire(domid, timeout)
        try:
            return self._store.get(incarnation, userid)
        finally:
            lock.release()

    def put(self, domid: int, userid: str, data: bytes, timeout: float) -> None:
        incarnation, lock = self._acquire(domid, timeout)
        try:
            self._store.put(incarnation, userid, data)
        finally:
            lock.release()

    def delete(self, domid: int, userid: str, timeout: float) -> bool:
        incarnation, lock = self._acquire(domid, timeout)
        try:
            return self._store.delete(incarnation, userid)
        finally:
            lock.release()


class _DirectoryLock:
    """flock on the store's directory: serialises creating managed domains."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
