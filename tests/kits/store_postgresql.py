"""PostgreSQL stores: a real server started for the test session, a fresh database per test.

The server listens on a unix socket in its own temporary directory only. As
root it runs as Debian's ``postgres`` user (PostgreSQL refuses root). Without
server binaries the PostgreSQL tests are skipped, except in CI (``CI`` set),
where that is an error.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from domdata import Incarnation

from . import StoreKit


def bindir() -> Path | None:
    """Where initdb, pg_ctl and postgres are: $PG_BINDIR, Debian's newest, or $PATH."""
    if os.environ.get("PG_BINDIR"):
        given = Path(os.environ["PG_BINDIR"])
        return given if (given / "initdb").exists() else None
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if debian:
        return Path(debian[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """One throw-away PostgreSQL server: initdb, start, stop, remove."""

    def __init__(self, binaries: Path) -> None:
        self.bin = binaries
        self.dir = Path(tempfile.mkdtemp(prefix="domdata-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        # PostgreSQL refuses to run as root: run it as the postgres user then.
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as, str(self.bin / tool), *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-k {self.dir} -p {self.port} -c listen_addresses='' -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres", **params: str) -> str:
        extra = "".join(f"&{key}={value}" for key, value in params.items())
        return f"postgresql:///{database}?host={self.dir}&port={self.port}&user=postgres{extra}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def unavailable() -> str | None:
    """Why this machine cannot run the PostgreSQL tests, or None."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        return f"pip install 'domdata[postgresql]' ({exc})"
    if bindir() is None:
        return "no PostgreSQL server binaries (apt-get install postgresql, or set PG_BINDIR)"
    return None


class PostgreSQLKit(StoreKit):
    name = "postgresql"

    def __init__(self) -> None:
        self.server: Server | None = None
        self._why_not: str | None = "the PostgreSQL kit was not set up"
        self._databases = 0

    def setup(self) -> None:
        self._why_not = unavailable()
        if self._why_not is not None and os.environ.get("CI"):
            raise RuntimeError(f"PostgreSQL tests cannot run in CI: {self._why_not}")

    def binaries(self) -> Path:
        """The server binaries; skips the test where there are none (never in CI: setup fails)."""
        binaries = bindir()
        if self._why_not is not None or binaries is None:
            pytest.skip(self._why_not or "no PostgreSQL server binaries")
        return binaries

    def teardown(self) -> None:
        if self.server is not None:
            self.server.remove()
            self.server = None

    def url(self, tmp_path: Path) -> str:
        # The server starts with the first test that needs it, once per session.
        if self.server is None:
            self.server = Server(self.binaries())
        # One database per test; the previous test's goes first, so the disk
        # holds one at a time.
        if self._databases:
            self.server.drop_database(f"t{self._databases}")
        self._databases += 1
        return self.server.create_database(f"t{self._databases}")

    def end_managed(self, url: str, incarnation: Incarnation) -> None:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM domains WHERE domid = %s AND uuid = %s", incarnation)


KIT = PostgreSQLKit()
