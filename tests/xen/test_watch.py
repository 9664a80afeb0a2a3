"""``domdata watch`` with the xen source: deaths seen by polling libxl's
domain list are collected at once; a listing that fails is survived."""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import domdata
from domdata import Domain, watch
from tests.kits.source_xen import ENV, Hypervisor
from tests.xen.conftest import BIN

#: How long a test waits for what should take well under a second.
PATIENCE = 5.0


def eventually(condition: Callable[[], bool], within: float = PATIENCE) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still not so after {within} s")
        time.sleep(0.01)


@contextmanager
def watching(url: str) -> Iterator[None]:
    """``watch.watch(url, "xen")`` in a thread, without periodic reaps after
    the first; stopped, and checked to return, at the end."""
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            watch.watch(url, "xen", interval=3600.0, stop=stop)
        except BaseException as exc:
            failure.append(exc)
            raise

    thread = threading.Thread(target=run, name="watch")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(PATIENCE)
    assert not thread.is_alive(), "watch did not return after stop was set"
    assert not failure


def gone(ctx: domdata.Context, dom: Domain) -> Callable[[], bool]:
    return lambda: all((i.domid, i.uuid) != dom.incarnation for i in ctx.list())


def logged(caplog: pytest.LogCaptureFixture, text: str) -> Callable[[], bool]:
    return lambda: any(text in r.getMessage() for r in caplog.records)


def started(caplog: pytest.LogCaptureFixture) -> Callable[[], bool]:
    """Whether the watcher finished its first reap (it has listed the domains by then)."""
    return lambda: any(r.getMessage().startswith("reaped ") for r in caplog.records)


@pytest.fixture(autouse=True)
def _debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="domdata.watch")


def test_a_domain_gone_from_libxl_has_its_data_collected(
    xen: Hypervisor, ctx: domdata.Context, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    dom, survivor = xen.start(), xen.start()
    ctx.store(dom.domid, "xl", b"doomed")
    ctx.store(survivor.domid, "xl", b"kept")
    with watching(url):
        eventually(started(caplog))
        xen.destroy(dom.domid)
        eventually(gone(ctx, dom))
    assert ctx.retrieve(survivor.domid, "xl") == b"kept"
    assert logged(
        caplog, f"collected incarnation {dom.incarnation}: 1 item (gone from xen's domain list)"
    )()


def test_a_domid_reused_at_once_still_ends_the_old_incarnation(
    xen: Hypervisor, ctx: domdata.Context, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    old = xen.start("reborn")
    ctx.store(old.domid, "xl", b"old")
    with watching(url):
        eventually(started(caplog))
        xen.destroy(old.domid)
        new = xen.start("reborn", domid=old.domid)
        ctx.store(new.domid, "xl", b"new")
        eventually(gone(ctx, old))
    assert ctx.retrieve(new.domid, "xl") == b"new"


def test_a_failing_listing_is_survived_and_the_watch_goes_on(
    xen: Hypervisor,
    ctx: domdata.Context,
    url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dom = xen.start()
    ctx.store(dom.domid, "xl", b"doomed")
    with watching(url):
        eventually(started(caplog))
        monkeypatch.setenv(ENV, str(tmp_path / "gone"))
        eventually(logged(caplog, "cannot list the domains of xen: xen: cannot list domains"))
        caplog.clear()
        monkeypatch.setenv(ENV, str(xen.path))
        eventually(logged(caplog, "watching the domains of xen"))
        xen.destroy(dom.domid)
        eventually(gone(ctx, dom))


def test_the_daemon_collects_and_exits_on_sigterm(xen: Hypervisor, ctx: domdata.Context, url: str) -> None:
    dom = xen.start()
    ctx.store(dom.domid, "xl", b"doomed")
    daemon = subprocess.Popen(
        [str(BIN / "domdata"), "--store", url, "--domains", "xen", "watch"],
        env=xen.env,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert daemon.stderr is not None
        assert b"watching the domains of xen" in daemon.stderr.readline()
        xen.destroy(dom.domid)
        eventually(gone(ctx, dom))
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=PATIENCE)
    assert daemon.returncode == 0, err
