"""Run every benchmark module and print one table of ratios against raw baselines.

python benchmarks/bench.py            # every backend this machine can run
python benchmarks/bench.py sqlite     # only rows_sqlite.py
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _table import Row, print_table


def main(names: list[str]) -> None:
    modules = sorted(p.stem for p in Path(__file__).parent.glob("rows_*.py"))
    wanted = [m for m in modules if not names or m.removeprefix("rows_") in names]
    rows: list[Row] = []
    for name in wanted:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(importlib.import_module(name).rows())
    print_table(rows)


if __name__ == "__main__":
    main(sys.argv[1:])
