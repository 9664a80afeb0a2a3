"""The managed domain table as libxl-style files: a record file beside the items,
and the one-step calls on a managed domain's item."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Collection, Iterable, Sequence

from ..._errors import DomainExists, StoreUnavailable
from ..._types import Domain, Incarnation
from ..base import NO_DOMAIN, NoDomain, OneStepTable
from ._directory import Directory
from ._lock import LockFile, LockFiles
from ._names import (
    INDEX_PREFIX,
    READ,
    RECORD,
    RECORD_SUFFIX,
    Entry,
    incarnations_of,
    of_kind,
    parse,
    record_name,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..._changes import Removal


class LibxlDomains(OneStepTable):
    """Managed domains as ``userdata-m.<domid>.<uuid>.domdata-domain`` files.

    ``domdata-domid.<domid>``, a symbolic link whose text is the record's name,
    finds a domid's record without a scan; it is written before the record, so
    every record has one, and one whose record is gone (libxl destroyed the
    domain) means no domain, until ``reap`` removes it. Creating a domain holds
    an flock on the directory itself: checking that the domid and name are
    free, and writing, are one step.

    The one-step calls lock the incarnation last seen under the domid, check
    its record after the lock (``_locked``), and act through the store's item
    operations.
    """

    def __init__(
        self,
        directory: Directory,
        locks: LockFiles,
        *,
        get: Callable[[Incarnation, str], bytes | None],
        put: Callable[[Incarnation, str, bytes], None],
        delete: Callable[[Incarnation, str], bool],
        files_of: Callable[[Collection[Incarnation]], list[Entry]],
        drop: Callable[[Collection[Incarnation], Removal], int],
        lock_timeout: float,
    ) -> None:
        self._dir = directory
        #: The store's lock files: the one-step calls take the domain's lock there.
        self._locks = locks
        #: The store's item operations (``get``, ``put``, ``delete``), for the one-step calls.
        self._get_item = get
        self._put_item = put
        self._delete_item = delete
        #: The store's ``files_of`` and ``drop``: removing a domain removes its files.
        self._files_of = files_of
        self._drop = drop
        self._lock_timeout = lock_timeout
        #: domid -> the domain last read, its incarnation and its record's name,
        #: trusted while the record exists: (domid, uuid) are in the name, and a
        #: record's name never changes (only a record removed and re-created for
        #: the very same incarnation under a new name would be missed).
        self._cache: dict[int, tuple[Domain, Incarnation, str]] = {}

    def add(self, domid: int | None, uuid: str, name: str | None) -> Domain:
        directory = self._dir
        with directory.locked(self._lock_timeout):
            records = self._scan()
            taken = {r.domid for r in records}
            if domid is None:
                domid = next(n for n in range(1, len(taken) + 2) if n not in taken)
            elif domid in taken:
                raise DomainExists("a domain with this domid exists", store=directory.url, domain=domid)
            named = next((r for r in records if r.name == name), None) if name is not None else None
            if named is not None:
                # The domain that has the name, not the domid this one would have had.
                raise DomainExists(f"a domain named {name!r} exists", store=directory.url, domain=named.domid)
            domain = Domain(domid, uuid, name)
            final = record_name(domain.incarnation)
            index = f"{INDEX_PREFIX}{domid}"
            try:
                directory.unlink(index + ".new")
                os.symlink(final, index + ".new", dir_fd=directory.fd)
                os.rename(index + ".new", index, src_dir_fd=directory.fd, dst_dir_fd=directory.fd)
            except OSError as exc:
                directory.fail(f"cannot write {index}", exc, domain.incarnation)
            content = json.dumps({"name": name}).encode() + b"\n"
            directory.write(final + ".new", final, content, domain.incarnation, None)
        self._cache.pop(domid, None)
        return domain

    def remove(self, incarnation: Incarnation) -> int:
        # All or nothing, as the user sees it: a file that cannot be unlinked
        # (a directory at an item's path) refuses the destroy before anything goes.
        for entry in self._files_of([incarnation]):
            try:
                info = os.stat(entry.name, dir_fd=self._dir.fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as exc:
                self._dir.fail(f"cannot destroy: {entry.name}", exc, incarnation)
            if stat.S_ISDIR(info.st_mode):
                raise StoreUnavailable(
                    f"cannot destroy: {entry.name} is a directory, not a file: nothing was removed",
                    store=self._dir.url,
                    domain=incarnation,
                )
        # The record goes first: a crash before the items go leaves a dead
        # incarnation's data, which reap collects; never a live domain missing some.
        self._cache.pop(incarnation.domid, None)
        try:
            self._dir.unlink(record_name(incarnation))
        except OSError as exc:
            self._dir.fail("cannot remove the domain's record", exc, incarnation)
        return self._drop([incarnation], "destroy")

    def get(self, domid: int) -> Domain | None:
        cached = self._cache.get(domid)
        if cached is not None:
            if os.access(cached[2], os.F_OK, dir_fd=self._dir.fd, follow_symlinks=False):
                return cached[0]
            del self._cache[domid]
        try:
            target = os.readlink(f"{INDEX_PREFIX}{domid}", dir_fd=self._dir.fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._dir.fail(f"cannot read {INDEX_PREFIX}{domid}", exc, domid)
        found = [d for d in self._read(parse([target])) if d.domid == domid]
        if not found:
            return None
        incarnation = found[0].incarnation
        self._cache[domid] = (found[0], incarnation, record_name(incarnation))
        return found[0]

    # -- the one-step calls ---------------------------------------------------------

    # The three calls share their shape (lock, act, release), written out rather
    # than through a callable: a call's cost is what this path is for.
    def get_item(self, domid: int, userid: str, timeout: float) -> bytes | NoDomain | None:
        lock = self._locked(domid, timeout)
        if lock is None:
            return NO_DOMAIN
        try:
            return self._get_item(lock.incarnation, userid)
        finally:
            self._locks.release(lock)

    def put_item(self, domid: int, userid: str, data: bytes, timeout: float) -> NoDomain | None:
        lock = self._locked(domid, timeout)
        if lock is None:
            return NO_DOMAIN
        try:
            self._put_item(lock.incarnation, userid, data)
        finally:
            self._locks.release(lock)
        return None

    def delete_item(self, domid: int, userid: str, timeout: float) -> bool | NoDomain:
        lock = self._locked(domid, timeout)
        if lock is None:
            return NO_DOMAIN
        try:
            return self._delete_item(lock.incarnation, userid)
        finally:
            self._locks.release(lock)

    def _locked(self, domid: int, timeout: float) -> LockFile | None:
        """The held lock of the incarnation that lives under *domid*; None if
        no managed domain has that domid. LockTimeout after *timeout* seconds.

        The contract's order (DESIGN section 1): the domain is checked *after*
        its lock is taken. The incarnation last seen under the domid (else the
        one looked up) is locked, then its record must still exist. If it does
        not, that incarnation has ended: the lock taken is discarded the libxl
        way, its file unlinked while held, then closed (section 4), and the
        look-up starts over.
        """
        # Context._acquire keeps this rule for every store. It is written again
        # for libxl because the general path's layers (the source asked before
        # and after, store.lock, the lock files) cost twice the time of the
        # system calls themselves on this store's most frequent call (issue 8).
        cache = self._cache
        while True:
            cached = cache.get(domid)
            if cached is None:
                # Not seen yet, or seen ended: look it up (readlink, read the record).
                if self.get(domid) is None:
                    return None
                cached = cache[domid]
            _, incarnation, record = cached
            lock = self._locks.lock(incarnation, timeout)
            try:
                if os.access(record, os.F_OK, dir_fd=self._dir.fd, follow_symlinks=False):
                    return lock
                del cache[domid]  # that incarnation has ended
            except BaseException:
                self._locks.release(lock)
                raise
            lock.discard()

    def sweep(self, names: Sequence[str], dry_run: bool) -> list[str]:
        """Index links whose record is gone, and half-made ones (under the directory lock).

        A link is only read when the listing *names* holds no record for its
        domid: a domid's link names its newest record (``add`` writes the link
        first, and only for a domid with no record), so a link beside a record
        of its domid is whole. A record removed after the listing leaves its
        link to the next reap.
        """
        directory = self._dir
        recorded = {
            n[11 : n.find(".", 11)] for n in names if n.startswith("userdata-m.") and n.endswith(RECORD)
        }
        start = len(INDEX_PREFIX)
        indexes = [
            n
            for n in names
            if n.startswith(INDEX_PREFIX) and (n.endswith(".new") or n[start:] not in recorded)
        ]
        if not indexes:
            return []
        removed = []
        with directory.locked(self._lock_timeout):
            for name in indexes:
                try:
                    target = os.readlink(name, dir_fd=directory.fd)
                except OSError:
                    continue
                if not name.endswith(".new") and os.access(
                    target, os.F_OK, dir_fd=directory.fd, follow_symlinks=False
                ):
                    continue
                if dry_run or directory.unlink(name):
                    removed.append(name)
        return removed

    def with_uuid(self, uuid: str) -> Sequence[Domain]:
        return [d for d in self._scan() if d.uuid == uuid]

    def with_name(self, name: str) -> Domain | None:
        return next((d for d in self._scan() if d.name == name), None)

    def all(self) -> Sequence[Domain]:
        return self._scan()

    def incarnations(self) -> set[Incarnation]:
        # A record's name says its incarnation: reap reads no record.
        return incarnations_of("m", (n for n in self._dir.listdir() if n.endswith(RECORD)))

    def _scan(self) -> list[Domain]:
        return self._read(parse(n for n in of_kind("m", self._dir.listdir()) if n.endswith(RECORD)))

    def _read(self, entries: Iterable[Entry]) -> list[Domain]:
        """The domains recorded among *entries*, by domid; records that vanish meanwhile are skipped."""
        directory = self._dir
        domains = []
        for entry in entries:
            if entry.kind != "m" or entry.rest != RECORD_SUFFIX:
                continue
            try:
                fd = os.open(entry.name, READ, dir_fd=directory.fd)
            except FileNotFoundError:
                continue
            except OSError as exc:
                directory.fail(f"cannot read the domain record {entry.name}", exc, entry.incarnation)
            try:
                raw = os.read(fd, 65536)
            except OSError as exc:
                directory.fail(f"cannot read the domain record {entry.name}", exc, entry.incarnation)
            finally:
                os.close(fd)
            try:
                # A record is UTF-8, as written: decoding first spares loads() guessing.
                name = json.loads(raw.decode())["name"]
            except (ValueError, TypeError, KeyError):
                name = None
            domains.append(Domain(*entry.incarnation, name if isinstance(name, str) else None))
        domains.sort(key=lambda d: (d.domid, d.uuid))
        return domains
