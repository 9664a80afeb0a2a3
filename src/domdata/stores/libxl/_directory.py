"""The store's directory: every file operation the libxl store makes, relative
to one directory descriptor, never through a symbolic link."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from ..._errors import LockTimeout, StoreUnavailable
from .._wait import wait_for
from ._names import CREATE, dir_of


class Directory:
    """One open libxl directory, with the errors of its operations translated."""

    def __init__(self, url: str, durable: bool) -> None:
        self.url = url
        self.path = dir_of(url)
        self.durable = durable
        try:
            # Never created: a typo must not look like an empty store.
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot open the directory {self.path}: {exc.strerror}", store=url
            ) from exc

    def fail(
        self, what: str, exc: OSError, incarnation: object = None, userid: str | None = None
    ) -> NoReturn:
        if exc.errno == errno.ELOOP:
            what += " (a symbolic link: domdata never follows links in the store; remove it)"
        raise StoreUnavailable(
            f"{what}: {exc.strerror}", store=self.url, domain=incarnation, userid=userid
        ) from exc

    def listdir(self) -> list[str]:
        try:
            return os.listdir(self.fd)
        except OSError as exc:
            self.fail(f"cannot read the directory {self.path}", exc)

    def unlink(self, name: str) -> bool:
        """Unlink *name*; False if it was not there."""
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            return False
        return True

    def sync(self) -> None:
        """fsync the directory (a rename or unlink survives a crash), unless not durable."""
        if self.durable:
            os.fsync(self.fd)

    def write(
        self, temp: str, final: str, data: bytes, domain: object = None, userid: str | None = None
    ) -> None:
        """Write *data* to a fresh *temp* (0600), fsync it, rename it over
        *final*, fsync the directory: a reader sees the old file or the new.
        *domain* and *userid* are for the error message."""
        directory = self.fd
        try:
            try:
                fd = os.open(temp, CREATE, 0o600, dir_fd=directory)
            except FileExistsError:
                # Debris of a killed writer, or a planted link: unlink never follows.
                os.unlink(temp, dir_fd=directory)
                fd = os.open(temp, CREATE, 0o600, dir_fd=directory)
        except OSError as exc:
            self.fail(f"cannot create {temp}", exc, domain, userid)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, final, src_dir_fd=directory, dst_dir_fd=directory)
        except OSError as exc:
            self.unlink(temp)
            self.fail(f"cannot write {final}, the old one is intact", exc, domain, userid)
        try:
            self.sync()
        except OSError as exc:
            self.fail(f"{final} was replaced but the directory could not be synced", exc, domain, userid)

    @contextmanager
    def locked(self, timeout: float) -> Iterator[None]:
        """Hold an flock on the directory itself (creating managed domains,
        sweeping debris), waiting at most *timeout* seconds."""

        def attempt() -> bool:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        if not wait_for(attempt, timeout):
            raise LockTimeout(f"the directory {self.path} stayed locked for {timeout:g} s", store=self.url)
        try:
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
