"""Start-up of the command line: whole ``domdata`` processes against ``python -c pass``.

A shell loop over many domains pays one process per call, so a single-item
command (``retrieve``, ``store``, ``unlink``, ``list DOM``) must cost at most
2.5x an empty Python process started from the same interpreter (issue 12).
Both are timed in the same run, interleaved round by round, on a fresh
SQLite store with managed domains named by DOMDATA_STORE, and ``retrieve``
once more on the default store a user without DOMDATA_STORE gets (under
XDG_STATE_HOME); the table gives min/median/max per process and the ratio of
the medians. Two rows without a target show the floor under ``store`` and
``retrieve``: a Python process that imports sqlite3 and does only that
(a durable upsert in WAL mode, or one select) on a database of its own.

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

#: The floor rows: sqlite3 alone, as a script given the database and the item.
FLOOR_STORE = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE IF NOT EXISTS item(userid TEXT PRIMARY KEY, data BLOB)")
with open(sys.argv[2], "rb") as item:
    db.execute("INSERT OR REPLACE INTO item VALUES ('xl', ?)", (item.read(),))
db.close()
"""
FLOOR_RETRIEVE = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
sys.stdout.buffer.write(db.execute("SELECT data FROM item WHERE userid = 'xl'").fetchone()[0])
db.close()
"""


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
        default_env = {k: v for k, v in env.items() if k != "DOMDATA_STORE"}
        default_env["XDG_STATE_HOME"] = str(Path(tmp, "state"))
        subprocess.run(
            [cli, "domain", "create", "bench"], env=default_env, check=True, stdout=subprocess.DEVNULL
        )
        commands: dict[str, tuple[list[object], dict[str, str]]] = {
            "domdata retrieve DOM USERID": ([cli, "retrieve", "bench", "xl"], env),
            "domdata store DOM USERID FILE": ([cli, "store", "bench", "xl", str(item)], env),
            "domdata unlink DOM USERID": ([cli, "unlink", "bench", "other"], env),
            "domdata list DOM": ([cli, "list", "bench"], env),
            "domdata retrieve DOM USERID (default store)": ([cli, "retrieve", "bench", "xl"], default_env),
        }
        floor_db = str(Path(tmp, "floor.db"))
        python = sys.executable
        floors: dict[str, tuple[list[object], dict[str, str]]] = {
            "floor: python, sqlite3 durable upsert": ([python, "-c", FLOOR_STORE, floor_db, item], env),
            "floor: python, sqlite3 select": ([python, "-c", FLOOR_RETRIEVE, floor_db], env),
        }
        commands.update(floors)
        baseline_argv = [sys.executable, "-c", "pass"]
        baseline: list[float] = []
        timings: dict[str, list[float]] = {name: [] for name in commands}
        for argv, argv_env in commands.values():
            _elapsed([str(a) for a in argv], argv_env)
        for _ in range(rounds):
            baseline.append(_elapsed(baseline_argv, env))
            for name, (argv, argv_env) in commands.items():
                timings[name].append(_elapsed([str(a) for a in argv], argv_env))
    print_table(
        [
            Row(name, timings[name], "python -c pass", baseline, None if name in floors else TARGET)
            for name in commands
        ]
    )


if __name__ == "__main__":
    main()
