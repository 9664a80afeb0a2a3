"""``libxl:///var/lib/xen``: the very files and lock of Xen's libxl (DESIGN section 4).

Everything lives flat in one directory, named as libxl names it::

    userdata-d.<domid>.<uuid>.<userid>              an item: the raw bytes, mode 0600
    userdata-n.<domid>.<uuid>.<userid>              its temporary file while it is written
    userdata-l.<domid>.<uuid>.domain-userdata-lock  the domain's lock (flock + inode re-check)
    userdata-m.<domid>.<uuid>.domdata-domain        a managed domain's record: {"name": ...}
    domdata-domid.<domid>                           symbolic link naming that domid's record

The managed record's letter ``m`` keeps it out of every userid's way (no
userid can overwrite it), while libxl's own destroy, which unlinks
``userdata-?.<domid>.<uuid>.*``, still takes it with the domain's data.
Every path is opened relative to the directory's descriptor, never through
a symbolic link. Lock files are kept while their domain lives (see ``lock``).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import stat
import time
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import NamedTuple, NoReturn
from urllib.parse import unquote, urlsplit

from .._errors import (
    CorruptItem,
    DomainExists,
    DomainNotFound,
    InvalidUserid,
    LockTimeout,
    ReapRefused,
    StoreUnavailable,
)
from .._types import Domain, Incarnation, Item
from .base import DomainTable, HeldLock, ManagedOps, Store, StoreOptions

LOCK_USERID = "domain-userdata-lock"
RECORD_SUFFIX = "domdata-domain"
_RECORD = f".{RECORD_SUFFIX}"
#: ``domdata-domid.<domid>``: a symbolic link naming that domid's record (read, never followed).
INDEX_PREFIX = "domdata-domid."
#: The userid libxl writes for every domain it creates (libxl_domain_config as JSON).
LIBXL_JSON = "libxl-json"
#: Unheld lock files a store keeps open between calls (one descriptor each).
KEPT_LOCKS = 64

_NAME = re.compile(
    r"userdata-([a-z])\.(0|[1-9][0-9]{0,9})\."
    r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.(.+)",
    re.DOTALL,
)
_MAX_DOMID = 2**32 - 1
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_LOCK = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def dir_of(url: str) -> str:
    """``libxl:///var/lib/xen`` -> ``/var/lib/xen``; ``libxl:rel/dir`` -> ``rel/dir``."""
    parts = urlsplit(url)
    if parts.netloc or not parts.path:
        raise StoreUnavailable("a libxl URL is libxl:///absolute/dir (libxl:///var/lib/xen)", store=url)
    return unquote(parts.path)


def item_name(kind: str, incarnation: Incarnation, userid: str) -> str:
    """The file name libxl gives *userid*'s file of this incarnation (kind d, n or l)."""
    return f"userdata-{kind}.{incarnation[0]}.{incarnation[1]}.{userid}"


def record_name(incarnation: Incarnation) -> str:
    """The file name of a managed domain's record."""
    return item_name("m", incarnation, RECORD_SUFFIX)


class _Entry(NamedTuple):
    """One parsed file name of the directory."""

    name: str
    kind: str
    incarnation: Incarnation
    rest: str


def _key(name: str) -> str:
    """``<domid>.<uuid>`` of a userdata file name, cut out without validating it:
    a cheap first sieve over a large directory; ``_parse`` checks what it keeps."""
    return name[11 : name.find(".", 11) + 37]


def _of_kind(kind: str, names: Iterable[str]) -> Iterator[str]:
    prefix = f"userdata-{kind}."
    return (name for name in names if name.startswith(prefix))


def _is_temp(name: str) -> bool:
    kind = name[9:10]
    return kind == "n" or (kind == "m" and not name.endswith(_RECORD))


def _parse(names: Iterable[str]) -> list[_Entry]:
    entries = []
    for name in names:
        match = _NAME.fullmatch(name)
        if match is not None and int(match[2]) <= _MAX_DOMID:
            entries.append(_Entry(name, match[1], Incarnation(int(match[2]), match[3]), match[4]))
    return entries


def is_xen_authority(source: str) -> bool:
    """Whether the domain source *source* is this host's Xen, through libvirt."""
    kind, _, uri = source.partition(":")
    parts = urlsplit(uri)
    return kind == "libvirt" and parts.scheme in ("xen", "xen+unix") and parts.netloc in ("", "localhost")


class _LockFile:
    """An open lock file; held while ``flock``-ed and its path names its inode."""

    __slots__ = ("dev", "doomed", "fd", "incarnation", "ino", "name", "store")

    def __init__(self, store: LibxlStore, incarnation: Incarnation, name: str, fd: int) -> None:
        self.store = store
        self.incarnation = incarnation
        self.name = name
        self.fd = fd
        mine = os.fstat(fd)
        self.dev, self.ino = mine.st_dev, mine.st_ino
        #: The path was unlinked while held (the incarnation was dropped): close, never keep.
        self.doomed = False

    def release(self) -> None:
        self.store._release(self)


class LibxlStore(Store):
    """Items, locks and managed domains as libxl's files in one directory."""

    lock_needs_uuid = True

    def __init__(self, url: str, options: StoreOptions) -> None:
        self.url = url
        self.path = dir_of(url)
        self._durable = options.durable
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

    # -- the lock ----------------------------------------------------------

    def lock(self, domid: int, uuid: str | None, timeout: float) -> HeldLock:
        """flock the incarnation's lock file, then check its path still names that inode.

        Unlike libxl, release keeps the file (and its descriptor) for the next
        call; lockers that find a file unlinked under them start over, so the
        two schemes mix. The file is unlinked, before closing, by ``drop``.
        """
        if uuid is None:
            raise TypeError("the libxl store's lock is keyed by (domid, uuid)")
        incarnation = Incarnation(domid, uuid)
        lock = self._kept.pop(incarnation, None)
        deadline = None
        pause = 0.0005
        try:
            while True:
                if lock is None:
                    lock = self._open_lock(incarnation)
                if self._try_flock(lock.fd):
                    if self._names_inode(lock):
                        self._held[incarnation] = lock
                        return lock
                    # Its holder released it by unlinking: lock the path's new file.
                    os.close(lock.fd)
                    lock = None
                    continue
                now = time.monotonic()
                if deadline is None:
                    deadline = now + timeout
                if now >= deadline:
                    raise LockTimeout(
                        f"the domain's lock is still held after {timeout:g} s",
                        domain=incarnation,
                        store=self.url,
                    )
                time.sleep(pause)
                pause = min(pause * 2, 0.02)
        except BaseException:
            if lock is not None:
                os.close(lock.fd)
            raise

    def _open_lock(self, incarnation: Incarnation, flags: int = _LOCK) -> _LockFile:
        name = item_name("l", incarnation, LOCK_USERID)
        try:
            return _LockFile(self, incarnation, name, os.open(name, flags, 0o600, dir_fd=self._dir))
        except OSError as exc:
            self._fail(f"cannot open the lock file {name}", exc, incarnation)

    @staticmethod
    def _try_flock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _names_inode(self, lock: _LockFile) -> bool:
        """libxl's re-check: does the path still name the inode we flocked?"""
        try:
            now = os.stat(lock.name, dir_fd=self._dir, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return now.st_ino == lock.ino and now.st_dev == lock.dev

    def _release(self, lock: _LockFile) -> None:
        if self._held.get(lock.incarnation) is lock:
            del self._held[lock.incarnation]
        if lock.doomed:
            os.close(lock.fd)
            return
        fcntl.flock(lock.fd, fcntl.LOCK_UN)
        self._kept[lock.incarnation] = lock
        if len(self._kept) > KEPT_LOCKS:
            os.close(self._kept.popitem(last=False)[1].fd)

    def _discard(self, lock: HeldLock) -> None:
        """Release a held lock the libxl way: unlink its file, then close."""
        assert isinstance(lock, _LockFile)
        self._unlink(lock.name)
        lock.doomed = True
        lock.release()

    def _unlink_lock(self, entry: _Entry) -> bool:
        """Unlink a lock file the libxl way: only while holding it, then close."""
        held = self._held.get(entry.incarnation)
        if held is not None and entry.name == held.name:
            self._unlink(entry.name)
            held.doomed = True
            return True
        kept = self._kept.get(entry.incarnation)
        if kept is not None and entry.name == kept.name:
            os.close(self._kept.pop(entry.incarnation).fd)
        try:
            fd = os.open(entry.name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._dir)
        except OSError:
            return False
        lock = _LockFile(self, entry.incarnation, entry.name, fd)
        try:
            return self._try_flock(fd) and self._names_inode(lock) and self._unlink(entry.name)
        finally:
            os.close(fd)

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
        """Refuse to reap a directory shared with libxl unless Xen itself says who is dead.

        A ``libxl-json`` item means libxl created that domain: only Xen
        (``libvirt:xen:///system``) knows whether it still runs.
        """
        if is_xen_authority(source):
            return
        suffix = f".{LIBXL_JSON}"
        for name in self._listdir():
            if name.startswith("userdata-d.") and name.endswith(suffix):
                raise ReapRefused(
                    f"{self.path} holds domains libxl created ({name}); only Xen knows which are dead: "
                    f"reap with the domain source libvirt:xen:///system, not {source} (or force it: --force)",
                    store=self.url,
                )

    def domain_table(self) -> DomainTable:
        return self._domains

    def managed_ops(self) -> ManagedOps:
        return _ManagedOps(self)

    def close(self) -> None:
        for lock in list(self._held.values()):
            os.close(lock.fd)
        self._held.clear()
        while self._kept:
            os.close(self._kept.popitem()[1].fd)
        if self._dir >= 0:
            os.close(self._dir)
            self._dir = -1


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
            if domains.get(domid) is domain:  # the cached record, confirmed to exist
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
