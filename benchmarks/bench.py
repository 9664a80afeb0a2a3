"""Run the benchmark modules and print one table of ratios against raw baselines.

Each row times domdata and its raw baseline (a hand-written equivalent: raw
sqlite3, the file operations libxl makes, psycopg, libvirt) in the same run,
interleaved, and prints min/median/max per call, the ratio of the medians and
the target it must meet.

    python benchmarks/bench.py                  # every backend
    python benchmarks/bench.py sqlite libxl     # only rows_sqlite.py and rows_libxl.py

Command-line start-up is measured apart: python benchmarks/startup.py.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _table import Row, print_table


def main(argv: list[str]) -> None:
    backends = sorted(p.stem.removeprefix("rows_") for p in Path(__file__).parent.glob("rows_*.py"))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("backends", nargs="*", metavar="BACKEND", help=f"one of {', '.join(backends)}")
    names: list[str] = parser.parse_args(argv).backends
    unknown = sorted(set(names) - set(backends))
    if unknown:
        parser.error(f"unknown backend {', '.join(unknown)} (known: {', '.join(backends)})")
    wanted = [f"rows_{b}" for b in backends if not names or b in names]
    rows: list[Row] = []
    for name in wanted:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(importlib.import_module(name).rows())
    print_table(rows)


if __name__ == "__main__":
    main(sys.argv[1:])
