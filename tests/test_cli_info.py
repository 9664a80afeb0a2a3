"""``domdata info`` and ``Context.info()``: which store, where, which schema,
which source, how much, and which host and boot."""

from __future__ import annotations

import datetime
import json
import socket
import sqlite3
from pathlib import Path

from click.testing import CliRunner, Result

import domdata
from domdata.cli import cli
from tests.kits.store_postgresql import KIT


def run(store: str, *args: str, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, ["--store", store, *args], input=stdin, catch_exceptions=False)


def test_info_on_sqlite(tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path / 'i.db'}"
    for name in ("web1", "web2"):
        run(store, "domain", "create", name)
        run(store, "store", name, "xl", stdin=b"x")
    run(store, "store", "web1", "other", stdin=b"y")
    report = json.loads(run(store, "info", "--json").stdout)
    assert report["store"] == store
    assert report["location"] == str(tmp_path / "i.db")
    with sqlite3.connect(tmp_path / "i.db") as db:
        assert report["schema_version"] == db.execute("PRAGMA user_version").fetchone()[0] > 1
    db.close()
    assert report["source"] == "managed"
    assert (report["domains"], report["items"], report["incarnations"]) == (2, 3, 2)
    assert report["host"] == socket.gethostname()
    assert report["boot"]["id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    stat = Path("/proc/stat").read_text().splitlines()
    btime = next(int(line.split()[1]) for line in stat if line.startswith("btime "))
    started = datetime.datetime.fromisoformat(report["boot"]["started"])
    assert started.timestamp() == btime
    assert report["version"] == domdata.__version__


def test_info_for_people(tmp_path: Path) -> None:
    (tmp_path / "xen").mkdir()
    store = f"libxl://{tmp_path / 'xen'}"
    run(store, "domain", "create", "web1")
    run(store, "store", "web1", "xl", stdin=b"x")
    lines = dict(line.split(None, 1) for line in run(store, "info").stdout.splitlines())
    assert lines["store"] == store
    assert lines["location"] == str(tmp_path / "xen")
    assert lines["schema"] == "-"
    assert lines["domains"] == "1 live"
    assert lines["items"] == "1 item of 1 incarnation"
    assert "None" not in "".join(lines.values())


def test_context_info_on_postgresql(tmp_path: Path, kits: None) -> None:
    url = KIT.url(tmp_path)
    with domdata.open(url, host="xen-07") as ctx:
        described = ctx.info()
    assert described.host == "xen-07"
    assert described.schema_version is not None
    assert described.schema_version >= 1
    assert "PostgreSQL server" in described.location
    assert described.source == "managed"
    assert run(url, "--host", "xen-07", "info", "--json").exit_code == 0
