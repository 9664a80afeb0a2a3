"""The keeper of a PostgreSQL domain lock handed to child processes.

An advisory lock belongs to a server session, and a session to one process:
so a lock that must outlive ``domdata lock`` (killed or not) is held by a
process of its own. ``Session.hand_off`` starts it; it detaches (a second
fork, a session of its own: no terminal signal reaches it), connects with
the application name ``domdata-keeper <pid>``, takes the lock, and sends back
one end of a socket pair it made (so SO_PEERCRED names the keeper). It holds
the lock until every process holding that end has closed it, or the server
hangs up; either way it exits, and the lock goes with its session.

Run as ``python -m domdata.stores.postgresql._keeper FD``: FD is a
SOCK_SEQPACKET socket that brings one JSON request (url, host, domid,
timeout_ms, connect_timeout) and takes back one JSON answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import sys

import psycopg

from ._connections import one_line
from ._session import KEEPER_NAME


def keep(boot: socket.socket) -> None:
    request = json.loads(boot.recv(65536))
    try:
        conn = psycopg.connect(
            request["url"],
            autocommit=True,
            application_name=KEEPER_NAME.format(pid=os.getpid()),
            connect_timeout=request["connect_timeout"],
        )
        conn.execute(
            "SELECT domdata_lock(%s, %s, %s)", (request["host"], request["domid"], request["timeout_ms"])
        )
    except psycopg.errors.LockNotAvailable:
        boot.send(b'{"error": "timeout"}')
        return
    except psycopg.Error as exc:
        boot.send(json.dumps({"error": one_line(exc)}).encode())
        return
    mine, theirs = socket.socketpair()
    socket.send_fds(boot, [b'{"ok": true}'], [theirs.fileno()])
    theirs.close()
    boot.close()
    waiting = select.poll()
    waiting.register(mine, select.POLLIN)
    # Readable only when the server hangs up: the session holds nothing else.
    waiting.register(conn.pgconn.socket, select.POLLIN)
    waiting.poll()
    conn.close()


def main() -> None:
    boot = socket.socket(fileno=int(sys.argv[1]))
    if os.fork():
        os._exit(0)  # the starter reaps this one at once; the keeper lives on detached
    try:
        keep(boot)
    except Exception as exc:  # whatever happens, the starter gets one line
        with contextlib.suppress(OSError):
            boot.send(json.dumps({"error": f"the lock keeper failed: {one_line(exc)}"}).encode())


if __name__ == "__main__":
    main()
