"""SIGKILL during libxl-store writes: what libxl would find on disk afterwards.

After each kill a libxl reader (whole file, empty is an error) finds a complete
version, the lock is free again (the kernel drops a dead holder's flock),
and the debris (a temp file) is removed by the next store or by reap.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import multiprocessing
import os
import random
import signal
import stat
from pathlib import Path

import pytest

import domdata
from domdata import Domain
from domdata.stores.libxl import RECORD_SUFFIX

fork = multiprocessing.get_context("fork")
KILLS = 200
RECORD_KILLS = 50

pytestmark = pytest.mark.slow


def _version(n: int) -> bytes:
    body = hashlib.sha256(str(n).encode()).digest() * (1 + (n * 7919) % 4096)
    return hashlib.sha256(body).hexdigest().encode() + body


def _complete(data: bytes) -> bool:
    return hashlib.sha256(data[64:]).hexdigest().encode() == data[:64]


def _writer(url: str, domid: int, first: int) -> None:
    with domdata.open(url) as ctx:
        n = first
        while True:
            ctx.store(domid, "cfg", _version(n))
            n += 1


def _kill(process: multiprocessing.process.BaseProcess) -> None:
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    assert process.exitcode == -signal.SIGKILL


def _lock_is_free(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_a_killed_writer_leaves_libxl_a_complete_item_and_a_free_lock(tmp_path: Path) -> None:
    xen = tmp_path / "xen"
    xen.mkdir()
    url = f"libxl://{xen}"
    with domdata.open(url) as ctx:
        dom: Domain = ctx.managed.create()
    item = xen / f"userdata-d.{dom.domid}.{dom.uuid}.cfg"
    temp = xen / f"userdata-n.{dom.domid}.{dom.uuid}.cfg"
    lock = xen / f"userdata-l.{dom.domid}.{dom.uuid}.domain-userdata-lock"
    rng = random.Random(3)
    versions = temps = 0
    for n in range(KILLS):
        writer = fork.Process(target=_writer, args=(url, dom.domid, n * 100_000))
        writer.start()
        writer.join(rng.uniform(0.002, 0.04))
        _kill(writer)
        if item.exists():
            data = item.read_bytes()
            assert data, "an empty item file is visible"
            assert _complete(data), "a torn item is visible"
            assert stat.S_IMODE(item.stat().st_mode) == 0o600
            versions += 1
        assert _lock_is_free(lock), "a killed writer's lock is still held"
        temps += temp.exists()
    assert versions > 0
    assert temps > 0, "no kill landed while a temp file existed: the test proved nothing"
    with domdata.open(url) as ctx:
        last = ctx.retrieve(dom.domid, "cfg")
        had_temp = temp.exists()
        report = ctx.reap()
        assert report.incarnations == []
        assert report.leftovers == ([str(temp)] if had_temp else [])
        assert not temp.exists()
        assert ctx.retrieve(dom.domid, "cfg") == last


def _creator(url: str) -> None:
    with domdata.open(url) as ctx:
        while True:
            ctx.destroy(ctx.managed.create("same-name").domid)


def test_a_killed_create_never_leaves_a_torn_domain_record(tmp_path: Path) -> None:
    xen = tmp_path / "xen"
    xen.mkdir()
    url = f"libxl://{xen}"
    rng = random.Random(5)
    for _ in range(RECORD_KILLS):
        creator = fork.Process(target=_creator, args=(url,))
        creator.start()
        creator.join(rng.uniform(0.002, 0.03))
        _kill(creator)
        for name in os.listdir(xen):
            if name.endswith(f".{RECORD_SUFFIX}"):
                assert json.loads((xen / name).read_bytes()) == {"name": "same-name"}
        with domdata.open(url) as ctx:
            for domain in ctx.domains.domains():
                ctx.destroy(domain.domid)
            ctx.reap()
        assert os.listdir(xen) == ["domdata-source"]  # the source the directory records
