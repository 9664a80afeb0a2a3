"""Hand-off rows: a call inside a lock handed to a child process against the
same call outside any lock, on every store this machine can run.

Target (issue 9): a call inside a hand-off costs at most 2x a call outside
one. The adopting context is opened in this process, as a child would open
it: ``DOMDATA_LOCKED`` names the hand-off's descriptor, which this process
holds. Its calls re-check the lock and the domain each time; the outside
calls (on another domain) take the store's one-step path.
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from _table import Row, compare

import domdata
from domdata._handoff import ENV

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.kits.store_postgresql import Server, bindir, unavailable


def _alternating(size: int) -> Callable[[], bytes]:
    payloads = itertools.cycle([os.urandom(size), os.urandom(size)])
    return lambda: next(payloads)


@contextmanager
def _adopted(url: str, held: domdata.Context, domid: int, host: str | None) -> Iterator[domdata.Context]:
    """A second context that adopts *held*'s hand-off of *domid*, as a child's would."""
    with held.handoff(domid) as handoff:
        os.environ[ENV] = handoff.grant.encode()
        try:
            child = domdata.open(url, host=host)
        finally:
            del os.environ[ENV]
        with child:
            yield child


def _rows(name: str, url: str, host: str | None = None) -> list[Row]:
    ours, theirs = _alternating(1024), _alternating(1024)
    with domdata.open(url, host=host) as ctx, domdata.open(url, host=host) as outside:
        inside_dom, outside_dom = ctx.managed.create(), ctx.managed.create()
        ctx.store(inside_dom.domid, "xl", ours())
        ctx.store(outside_dom.domid, "xl", theirs())
        with _adopted(url, ctx, inside_dom.domid, host) as child:
            return [
                compare(
                    f"{name} retrieve 1 KiB in a hand-off",
                    lambda: child.retrieve(inside_dom.domid, "xl"),
                    "same outside any lock",
                    lambda: outside.retrieve(outside_dom.domid, "xl"),
                    number=500,
                    target=2.0,
                ),
                compare(
                    f"{name} store 1 KiB (durable) in a hand-off",
                    lambda: child.store(inside_dom.domid, "xl", ours()),
                    "same outside any lock",
                    lambda: outside.store(outside_dom.domid, "xl", theirs()),
                    number=50,
                    target=2.0,
                ),
            ]


def rows() -> list[Row]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("DOMDATA_BENCH_DIR")) as tmp:
        workdir = Path(tmp)
        found = _rows("sqlite", f"sqlite://{workdir / 'handoff.db'}")
        (workdir / "xen").mkdir()
        found += _rows("libxl", f"libxl://{workdir / 'xen'}")
        binaries = bindir()
        if unavailable() is None and binaries is not None:
            server = Server(binaries)
            try:
                found += _rows("postgresql", server.create_database("handoff"), host="bench")
            finally:
                server.remove()
        return found
