"""Timing and the one ratio table every benchmark module feeds.

A benchmark module ``benchmarks/rows_<name>.py`` defines ``rows() -> list[Row]``;
``python benchmarks/bench.py`` runs them all and prints one table. Each row
times domdata and its raw baseline in the same run, interleaved, so a noisy
neighbour slows both alike.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import domdata


@dataclass
class Row:
    """domdata against its raw baseline for one operation (seconds per call)."""

    name: str
    domdata: list[float]
    baseline_name: str
    baseline: list[float]
    #: The ratio (median domdata / median baseline) must be at most this.
    target: float | None = None
    #: Or: domdata's median must take at most this many seconds.
    limit: float | None = None

    @property
    def ratio(self) -> float:
        return statistics.median(self.domdata) / statistics.median(self.baseline)


def per_call(call: Callable[[], object], number: int) -> float:
    """Seconds per call of *call*, averaged over *number* calls."""
    start = time.perf_counter()
    for _ in range(number):
        call()
    return (time.perf_counter() - start) / number


def compare(
    name: str,
    ours: Callable[[], object],
    baseline_name: str,
    theirs: Callable[[], object],
    *,
    number: int,
    repeat: int = 7,
    target: float | None = None,
) -> Row:
    """Time *ours* and *theirs* alternately, *repeat* rounds of *number* calls."""
    mine: list[float] = []
    raw: list[float] = []
    for _ in range(repeat):
        raw.append(per_call(theirs, number))
        mine.append(per_call(ours, number))
    return Row(name, mine, baseline_name, raw, target)


def destroy_and_list(ctx: domdata.Context, first_victim: int) -> dict[str, list[float]]:
    """Time ``destroy`` and ``list`` on a store already filled with domains
    numbered from *first_victim*, each with one item: each destroy takes the
    next of them; list reads a domain with two items made here."""
    target = ctx.managed.create(domid=first_victim - 1)
    ctx.store(target.domid, "xl", b"x" * 100)
    ctx.store(target.domid, "libvirt-xml", b"<domain/>")
    victims = itertools.count(first_victim)
    return {
        "destroy": [per_call(lambda: ctx.destroy(next(victims)), 10) for _ in range(7)],
        "list": [per_call(lambda: ctx.list(target.domid), 200) for _ in range(7)],
    }


def growth_rows(backend: str, small: dict[str, list[float]], large: dict[str, list[float]]) -> list[Row]:
    """destroy and list at 100,000 domains against the same at 100: target 2x."""
    return [
        Row(
            f"{backend} {name} at 100,000 domains",
            large[name],
            "same at 100 domains",
            small[name],
            target=2.0,
        )
        for name in ("destroy", "list")
    ]


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}"


def print_table(rows: list[Row]) -> None:
    """min/median/max in microseconds for both sides, the ratio and the verdict."""
    header = ("operation", "domdata min/med/max µs", "baseline", "baseline min/med/max µs", "ratio", "target")
    lines = [header]
    for row in rows:
        verdict = ""
        if row.target is not None:
            verdict = f"<= {row.target:g}x {'ok' if row.ratio <= row.target else 'MISS'}"
        elif row.limit is not None:
            met = statistics.median(row.domdata) <= row.limit
            verdict = f"<= {row.limit:g} s {'ok' if met else 'MISS'}"
        lines.append(
            (
                row.name,
                "/".join(_us(f(row.domdata)) for f in (min, statistics.median, max)),
                row.baseline_name,
                "/".join(_us(f(row.baseline)) for f in (min, statistics.median, max)),
                f"{row.ratio:.2f}x",
                verdict,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * width for width in widths))
