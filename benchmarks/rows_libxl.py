"""libxl rows: domdata's public API against the raw file operations libxl makes.

Targets (issue 3): durable store <= 1.15x the raw sequence (temp write, fsync,
rename, fsync of the directory); locked retrieve <= 0.5x libxl's own locking
(lock file created, flocked, re-checked and unlinked around each read);
reap of 10,000 domains with 10% dead within an absolute limit of 1 s, shown
beside the floor of that work (one scan, unlink the dead domains' files).

Both sides of a row do the same work but for what the row compares. The
locked retrieve's baseline looks the domain up before locking and checks it
after, as libxl does (``libxl_domain_info``, for the uuid in the lock's path,
then for "the domain is still alive") and as domdata must (DESIGN section 1);
here both look at the managed record, one ``access`` each. Until issue 8's
benchmark clause the baseline skipped both while domdata paid for them. The
reap's directory holds what domdata's managed domains have: a record, an
item, a kept lock file and a ``domdata-domid`` index link each (the links
were missing; the dead domains' links dangle, as a crashed toolstack leaves
them, and reap removes them).
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from _table import Row, compare

import domdata

DOMAINS = 10_000
DEAD = DOMAINS // 10
REAP_LIMIT = 1.0


def _alternating(size: int) -> Callable[[], bytes]:
    payloads = itertools.cycle([os.urandom(size), os.urandom(size)])
    return lambda: next(payloads)


def _raw_store(directory: int, name: str, payload: Callable[[], bytes]) -> Callable[[], None]:
    temp, final = f"userdata-n.{name}", f"userdata-d.{name}"

    def store() -> None:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600, dir_fd=directory)
        os.write(fd, payload())
        os.fsync(fd)
        os.close(fd)
        os.rename(temp, final, src_dir_fd=directory, dst_dir_fd=directory)
        os.fsync(directory)

    return store


def _libxl_retrieve(directory: int, name: str) -> Callable[[], bytes]:
    key = name[: name.rindex(".")]
    lock, item = f"userdata-l.{key}.domain-userdata-lock", f"userdata-d.{name}"
    record = f"userdata-m.{key}.domdata-domain"
    with open(os.open(record, os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=directory), "wb") as file:
        file.write(json.dumps({"name": None}).encode() + b"\n")

    def lives() -> bool:
        return os.access(record, os.F_OK, dir_fd=directory, follow_symlinks=False)

    def retrieve() -> bytes:
        if not lives():  # libxl_domain_info: the uuid that names the lock file
            raise RuntimeError(f"{record} is gone")
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666, dir_fd=directory)
            fcntl.flock(fd, fcntl.LOCK_EX)
            mine = os.fstat(fd)
            try:
                now = os.stat(lock, dir_fd=directory)
                if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
            if not lives():  # libxl_domain_info again: the domain is still alive
                raise RuntimeError(f"{record} is gone")
            data_fd = os.open(item, os.O_RDONLY | os.O_CLOEXEC, dir_fd=directory)
            try:
                return os.read(data_fd, os.fstat(data_fd).st_size)
            finally:
                os.close(data_fd)
        finally:
            os.unlink(lock, dir_fd=directory)
            os.close(fd)

    return retrieve


def _store_and_retrieve(workdir: Path, size: int) -> list[Row]:
    label = f"{size // 1024} KiB"
    raw_dir = workdir / f"raw{size}"
    raw_dir.mkdir()
    directory = os.open(raw_dir, os.O_RDONLY | os.O_DIRECTORY)
    raw_name = f"1.{uuid.uuid4()}.xl"
    (workdir / f"dd{size}").mkdir()
    try:
        with domdata.open(f"libxl://{workdir / f'dd{size}'}") as ctx:
            dom = ctx.managed.create()
            ctx.store(dom.domid, "xl", os.urandom(size))
            raw_store = _raw_store(directory, raw_name, _alternating(size))
            raw_store()
            ours = _alternating(size)
            rows = [
                compare(
                    f"libxl store {label} (durable)",
                    lambda: ctx.store(dom.domid, "xl", ours()),
                    "raw temp+fsync+rename+fsync dir",
                    raw_store,
                    number=50,
                    target=1.15,
                )
            ]
            if size <= 1024:
                rows.append(
                    compare(
                        f"libxl locked retrieve {label}",
                        lambda: ctx.retrieve(dom.domid, "xl"),
                        "libxl locking: create+flock+unlink",
                        _libxl_retrieve(directory, raw_name),
                        number=2000,
                        target=0.5,
                    )
                )
    finally:
        os.close(directory)
    return rows


def _populate(directory: Path, live: list[domdata.Incarnation], dead: list[domdata.Incarnation]) -> None:
    """Files as a host with these managed domains has them (written directly,
    not one fsync each); the dead ones lost their record in a crash."""
    item = os.urandom(512)
    record = json.dumps({"name": None}).encode() + b"\n"
    for domid, uid in live:
        (directory / f"userdata-m.{domid}.{uid}.domdata-domain").write_bytes(record)
        (directory / f"userdata-d.{domid}.{uid}.xl").write_bytes(item)
        (directory / f"userdata-l.{domid}.{uid}.domain-userdata-lock").touch(mode=0o600)
    for domid, uid in dead:
        (directory / f"userdata-d.{domid}.{uid}.xl").write_bytes(item)
        (directory / f"userdata-d.{domid}.{uid}.libvirt-xml").write_bytes(item)
    for domid, uid in live + dead:
        os.symlink(f"userdata-m.{domid}.{uid}.domdata-domain", directory / f"domdata-domid.{domid}")


def _floor(directory: Path, dead: set[tuple[int, str]]) -> None:
    """The least a reap can do: one scan, unlink every file of the dead incarnations."""
    links = {f"domdata-domid.{domid}" for domid, _ in dead}
    for name in os.listdir(directory):
        if name.startswith("userdata-"):
            _, domid, rest = name.split(".", 2)
            if (int(domid), rest[:36]) in dead:
                os.unlink(directory / name)
        elif name in links:
            os.unlink(directory / name)


def _reap(workdir: Path) -> Row:
    ours, floor = [], []
    for round_ in range(5):
        incarnations = [domdata.Incarnation(n, str(uuid.uuid4())) for n in range(1, DOMAINS + 1)]
        dead = incarnations[::10]
        live = [i for i in incarnations if i not in set(dead)]
        ours_dir, floor_dir = workdir / f"reap{round_}", workdir / f"floor{round_}"
        for directory in (ours_dir, floor_dir):
            directory.mkdir()
            _populate(directory, live, dead)
        dead_keys = {(i.domid, i.uuid) for i in dead}
        start = time.perf_counter()
        _floor(floor_dir, dead_keys)
        floor.append(time.perf_counter() - start)
        with domdata.open(f"libxl://{ours_dir}") as ctx:
            start = time.perf_counter()
            report = ctx.reap()
            ours.append(time.perf_counter() - start)
        assert len(report.incarnations) == DEAD, report
    row = Row("libxl reap, 10,000 domains, 10% dead", ours, "floor: 1 scan + unlink dead", floor)
    row.limit = REAP_LIMIT
    return row


def rows() -> list[Row]:
    # The real disk, not tmpfs: durable rows must pay for fsync as users do.
    with tempfile.TemporaryDirectory(dir=os.environ.get("DOMDATA_BENCH_DIR")) as tmp:
        workdir = Path(tmp)
        return [
            *_store_and_retrieve(workdir, 1024),
            *_store_and_retrieve(workdir, 64 * 1024),
            _reap(workdir),
        ]
