"""Handing a held domain lock to child processes (DESIGN section 8): what a child is given.

A process holding a hand-off (``ctx.handoff(domid)``, ``domdata lock``)
runs a child with two things: the handle itself, an inherited descriptor
(``pass_fds``), and ``DOMDATA_LOCKED``, which only says which descriptor it
is and for which domain and host::

    DOMDATA_LOCKED={"fd": 3, "domid": 7, "uuid": "…", "host": null}

The variable is a pointer, never a proof: ``domdata.open`` in the child
adopts the lock only if the store proves that descriptor holds this very
store's lock of that incarnation (``stores/_handoff.py``). A variable that
is malformed, too long, or points at nothing that proves it, is ignored:
the child's calls then wait for the lock like any other caller's.
"""

from __future__ import annotations

import os

from ._types import MAX_DOMID, Incarnation

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, NamedTuple
else:
    from ._named import NamedTuple

#: The environment variable naming the inherited handle.
ENV = "DOMDATA_LOCKED"
#: A longer value is not a grant domdata wrote: ignored unparsed.
MAX_LENGTH = 1024
_UUID_GROUPS = [8, 4, 4, 4, 12]
_LOWER_HEX = frozenset("0123456789abcdef")
_MAX_FD = 2**31 - 1


class Grant(NamedTuple):
    """Which inherited descriptor holds which incarnation's lock, for which host."""

    fd: int
    incarnation: Incarnation
    host: str | None

    def encode(self) -> str:
        import json  # only a process handing a lock off pays for it

        domid, uuid = self.incarnation
        return json.dumps({"fd": self.fd, "domid": domid, "uuid": uuid, "host": self.host})

    @classmethod
    def parse(cls, text: str) -> Grant | None:
        """The grant *text* describes, or None if it is not one domdata writes."""
        if len(text) > MAX_LENGTH:
            return None
        import json  # only a process started under a hand-off pays for it

        try:
            fields = json.loads(text)
        except ValueError:
            return None
        if not isinstance(fields, dict):
            return None
        fd, domid, uuid, host = (fields.get(key) for key in ("fd", "domid", "uuid", "host"))
        if (
            type(fd) is not int
            or type(domid) is not int
            or not (0 <= fd <= _MAX_FD and 0 <= domid <= MAX_DOMID)
        ):
            return None
        if not isinstance(uuid, str) or not _canonical_uuid(uuid):
            return None
        if host is not None and not isinstance(host, str):
            return None
        return cls(fd, Incarnation(domid, uuid), host)


def _canonical_uuid(text: str) -> bool:
    """Whether *text* is a uuid as domdata writes one: 8-4-4-4-12 lower-case hex digits."""
    groups = text.split("-")
    return [len(group) for group in groups] == _UUID_GROUPS and _LOWER_HEX.issuperset(text.replace("-", ""))


def inherited() -> Grant | None:
    """The grant this process was started with, if any (read once, at open)."""
    text = os.environ.get(ENV)
    return None if not text else Grant.parse(text)


class HandOff(NamedTuple):
    """What ``ctx.handoff(domid)`` yields: the incarnation whose lock is held,
    and how to start a child process that uses it::

        with ctx.handoff(domid) as held:
            subprocess.run(argv, **held.popen_kwargs())
    """

    incarnation: Incarnation
    grant: Grant

    @property
    def fd(self) -> int:
        """The descriptor the child must inherit."""
        return self.grant.fd

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """*base* (default: this process's environment) with ``DOMDATA_LOCKED`` set."""
        return {**(os.environ if base is None else base), ENV: self.grant.encode()}

    def popen_kwargs(self, base: Mapping[str, str] | None = None) -> dict[str, Any]:
        """``env`` and ``pass_fds`` for ``subprocess.run`` / ``Popen``."""
        return {"env": self.environ(base), "pass_fds": (self.fd,)}
