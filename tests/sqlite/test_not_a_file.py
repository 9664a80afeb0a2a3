"""A store URL naming something that is not a regular file (sqlite) or not a
directory (libxl) is refused before SQLite or libxl's layout touches it:
nothing is created beside it (no ``-journal``, no ``-wal``, no ``-locks``)."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

import domdata


@contextmanager
def _char_device(path: Path) -> Iterator[None]:
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
    except PermissionError:
        pytest.skip("making a character device needs root (CAP_MKNOD)")
    yield


@contextmanager
def _fifo(path: Path) -> Iterator[None]:
    os.mkfifo(path)
    yield


@contextmanager
def _socket(path: Path) -> Iterator[None]:
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(path))
        yield


@contextmanager
def _directory(path: Path) -> Iterator[None]:
    path.mkdir()
    yield


KINDS: dict[str, Callable[[Path], AbstractContextManager[None]]] = {
    "char-device": _char_device,
    "fifo": _fifo,
    "socket": _socket,
    "directory": _directory,
}


@pytest.mark.parametrize("kind", KINDS)
def test_sqlite_refuses_a_path_that_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "store"
    with KINDS[kind](path):
        before = sorted(os.listdir(tmp_path))
        with pytest.raises(domdata.StoreUnavailable, match=f"{path} is not a regular file") as caught:
            domdata.open(f"sqlite://{path}")
        assert type(caught.value) is domdata.StoreUnavailable
        assert sorted(os.listdir(tmp_path)) == before


def test_sqlite_refuses_a_link_to_a_device(tmp_path: Path) -> None:
    with _char_device(tmp_path / "null"):
        (tmp_path / "store").symlink_to(tmp_path / "null")
        with pytest.raises(domdata.StoreUnavailable, match="is not a regular file"):
            domdata.open(f"sqlite://{tmp_path / 'store'}")
        assert sorted(os.listdir(tmp_path)) == ["null", "store"]


@pytest.mark.parametrize("kind", ["char-device", "fifo", "socket"])
def test_libxl_refuses_a_path_that_is_not_a_directory(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "store"
    with KINDS[kind](path):
        before = sorted(os.listdir(tmp_path))
        with pytest.raises(domdata.StoreUnavailable, match=f"{path}.*[Nn]ot a directory"):
            domdata.open(f"libxl://{path}")
        assert sorted(os.listdir(tmp_path)) == before


def test_a_regular_file_still_opens(tmp_path: Path) -> None:
    (tmp_path / "store").touch()
    with domdata.open(f"sqlite://{tmp_path / 'store'}") as ctx:
        ctx.managed.create("web1")
