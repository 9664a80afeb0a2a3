"""A store racing a libvirt domain's death never leaves data behind: the
domain is checked after its lock is taken, in the contract's general path
(the libvirt source has no one-step calls). Threads, because libvirt's
test driver is one hypervisor per process.

The collector holds the domain's lock while the domain dies, as ``domdata
watch`` does when it collects: a store that checked the domain before
taking the lock would find it alive, wait, then write into a dead
incarnation."""

from __future__ import annotations

import threading
import time

import pytest

import domdata
from domdata import Domain, Incarnation
from tests.kits.source_libvirt import KIT, URI

RACES = 200

pytestmark = pytest.mark.slow


def _store(url: str, domains: list[Domain], barrier: threading.Barrier, errors: list[BaseException]) -> None:
    try:
        with domdata.open(url, f"libvirt:{URI}") as ctx:
            for dom in domains:
                barrier.wait()
                for n in range(3):
                    try:
                        with ctx.lock(dom.domid):
                            ctx.store(dom.domid, f"item{n}", b"written while the domain dies")
                    except domdata.DomainNotFound:
                        break
    except BaseException as exc:
        errors.append(exc)
        barrier.abort()


def _kill(url: str, domains: list[Domain], barrier: threading.Barrier, errors: list[BaseException]) -> None:
    try:
        with domdata.open(url, f"libvirt:{URI}") as ctx:
            for dom in domains:
                with ctx.lock(dom.domid):
                    barrier.wait()
                    time.sleep(0.002)  # the storer is waiting for the lock by now
                    KIT.end(ctx, dom)
                    ctx.destroy(Incarnation(dom.domid, dom.uuid))  # what `domdata watch` does on the event
    except BaseException as exc:
        errors.append(exc)
        barrier.abort()


def test_a_store_racing_a_domains_death_leaves_nothing(url: str, ctx: domdata.Context) -> None:
    domains = [KIT.create(ctx) for _ in range(RACES)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=role, args=(url, domains, barrier, errors)) for role in (_store, _kill)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert ctx.list() == []
