"""Connection plumbing: printable URLs, one-line errors, the pool's hooks."""

from __future__ import annotations

import logging
import math
import select
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit

import psycopg
from psycopg.types.string import TextLoader

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    Connection: TypeAlias = psycopg.Connection[Any]
    Cursor: TypeAlias = psycopg.Cursor[Any]
    Row: TypeAlias = tuple[Any, ...]

# The pool logs each failed reconnection; with no logging configured Python
# would print them all on stderr. An application that configures logging
# still gets them; otherwise the StoreUnavailable raised says it once.
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())


def printable_url(url: str) -> str:
    """The URL without its password (in the authority or the query)."""
    parts = urlsplit(url)
    if parts.password is not None:
        url = url.replace(f":{parts.password}@", "@", 1)
    if any(key == "password" for key, _ in parse_qsl(parts.query)):
        kept = [(key, value) for key, value in parse_qsl(parts.query) if key != "password"]
        url = url.partition("?")[0] + ("?" + urlencode(kept, safe="/") if kept else "")
    return url


def milliseconds(timeout: float) -> int:
    """A lock timeout for ``lock_timeout``, where 0 would mean forever."""
    return min(max(1, math.ceil(timeout * 1000)), 2**31 - 1)


def server_of(params: dict[str, Any]) -> str:
    """How errors name the server: host (or socket directory), port, database."""
    return "PostgreSQL server {}:{} database {}".format(
        params.get("host") or "(default socket)",
        params.get("port") or 5432,
        params.get("dbname") or "(default)",
    )


def one_line(exc: BaseException) -> str:
    """libpq's messages span lines (a hint on the second): errors are one line."""
    return " ".join(str(exc).split())


def hung_up(conn: Connection) -> bool:
    """Whether the server hung up on this idle connection (shutdown, restart,
    idle timeout), found without a round trip: it has something to read."""
    try:
        fd = conn.pgconn.socket
    except psycopg.OperationalError:  # closed already
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def drop_if_hung_up(conn: Connection) -> None:
    """The pool's check: closes a connection the server hung up on."""
    if hung_up(conn):
        conn.close()
        raise psycopg.OperationalError("the server closed the connection")


def session_setup(durable: bool) -> Callable[[Connection], None]:
    def configure(conn: Connection) -> None:
        conn.adapters.register_loader("uuid", TextLoader)
        conn.execute("SELECT set_config('synchronous_commit', %s, false)", ("on" if durable else "off",))

    return configure
