"""The managed domain table as libxl-style files: a record file beside the items."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Collection, Iterable, Sequence

from ..._errors import DomainExists, StoreUnavailable
from ..._types import Domain, Incarnation
from ..base import DomainTable
from ._directory import Directory
from ._names import INDEX_PREFIX, READ, RECORD_SUFFIX, Entry, of_kind, parse, record_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..._changes import Removal


class LibxlDomains(DomainTable):
    """Managed domains as ``userdata-m.<domid>.<uuid>.domdata-domain`` files.

    ``domdata-domid.<domid>``, a symbolic link whose text is the record's name,
    finds a domid's record without a scan; it is written before the record, so
    every record has one, and one whose record is gone (libxl destroyed the
    domain) means no domain, until ``reap`` removes it. Creating a domain holds
    an flock on the directory itself: checking that the domid and name are
    free, and writing, are one step.
    """

    def __init__(
        self,
        directory: Directory,
        files_of: Callable[[Collection[Incarnation]], list[Entry]],
        drop: Callable[[Collection[Incarnation], Removal], int],
        lock_timeout: float,
    ) -> None:
        self._dir = directory
        #: The store's ``files_of`` and ``drop``: removing a domain removes its files.
        self._files_of = files_of
        self._drop = drop
        self._lock_timeout = lock_timeout
        #: domid -> the domain last read and its record's name, trusted while the
        #: record exists: (domid, uuid) are in the name, and a record's name never
        #: changes (only a record removed and re-created for the very same
        #: incarnation under a new name would be missed).
        self._cache: dict[int, tuple[Domain, str]] = {}

    def add(self, domid: int | None, uuid: str, name: str | None) -> Domain:
        directory = self._dir
        with directory.locked(self._lock_timeout):
            records = self._scan()
            taken = {r.domid for r in records}
            if domid is None:
                domid = next(n for n in range(1, len(taken) + 2) if n not in taken)
            elif domid in taken:
                raise DomainExists("a domain with this domid exists", store=directory.url, domain=domid)
            if name is not None and any(r.name == name for r in records):
                raise DomainExists(f"a domain named {name!r} exists", store=directory.url, domain=domid)
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
            if os.access(cached[1], os.F_OK, dir_fd=self._dir.fd, follow_symlinks=False):
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
        self._cache[domid] = (found[0], record_name(found[0].incarnation))
        return found[0]

    def sweep(self, names: Iterable[str], dry_run: bool) -> list[str]:
        """Index links whose record is gone, and half-made ones (under the directory lock)."""
        directory = self._dir
        indexes = [n for n in names if n.startswith(INDEX_PREFIX)]
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

    def _scan(self) -> list[Domain]:
        return self._read(parse(of_kind("m", self._dir.listdir())))

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
                name = json.loads(raw)["name"]
            except (ValueError, TypeError, KeyError):
                name = None
            domains.append(Domain(*entry.incarnation, name if isinstance(name, str) else None))
        domains.sort(key=lambda d: (d.domid, d.uuid))
        return domains
