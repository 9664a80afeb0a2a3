"""Start-up of the command line: whole ``domdata`` processes against ``python -c pass``.

A shell loop over many domains pays one process per call, so a single-item
command (``retrieve``, ``store``, ``unlink``, ``list DOM``) must cost at most
2.5x an empty Python process started from the same interpreter (issue 12).
Both are timed in the same run, interleaved round by round, on a fresh
SQLite store with managed domains (the default a user gets), and the table
gives min/median/max per process and the ratio of the medians.

    python benchmarks/startup.py             # 21 rounds
    python benchmarks/startup.py --rounds 51
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _table import Row, print_table

TARGET = 2.5


def _elapsed(argv: Sequence[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=21, help="processes timed per command (default 21)")
    rounds: int = parser.parse_args().rounds
    cli = Path(sys.executable).parent / "domdata"
    if not cli.exists():
        parser.error(f"no domdata command beside {sys.executable}: pip install the package first")
    with tempfile.TemporaryDirectory() as tmp:
        # As a user runs it: bytecode cached (a first run writes it; not timed).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["DOMDATA_STORE"] = f"sqlite://{tmp}/startup.db"
        item = Path(tmp, "item")
        item.write_bytes(b"name = 'bench'\n")
        subprocess.run([cli, "domain", "create", "bench"], env=env, check=True, stdout=subprocess.DEVNULL)
        commands = {
            "domdata retrieve DOM USERID": [cli, "retrieve", "bench", "xl"],
            "domdata store DOM USERID FILE": [cli, "store", "bench", "xl", str(item)],
            "domdata unlink DOM USERID": [cli, "unlink", "bench", "other"],
            "domdata list DOM": [cli, "list", "bench"],
        }
        baseline_argv = [sys.executable, "-c", "pass"]
        baseline: list[float] = []
        timings: dict[str, list[float]] = {name: [] for name in commands}
        for argv in commands.values():
            _elapsed([str(a) for a in argv], env)
        for _ in range(rounds):
            baseline.append(_elapsed(baseline_argv, env))
            for name, argv in commands.items():
                timings[name].append(_elapsed([str(a) for a in argv], env))
    print_table([Row(name, timings[name], "python -c pass", baseline, TARGET) for name in commands])


if __name__ == "__main__":
    main()
