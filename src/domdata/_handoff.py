"""Handing a held domain lock to child processes (DESIGN section 8): what a child is given.

A process holding a hand-off (``ctx.handoff(domid)``, ``domdata lock``)
runs a child with two things: the handle itself, an inherited descriptor
(``pass_fds``), and ``DOMDATA_LOCKED``, which only says which descriptor it
is and for which domain and host::

    DOMDATA_LOCKED={"fd": 3, "domid": 7, "uuid": "…", "host": null}

A child of nested hand-offs of several domains (``domdata lock 7 -- domdata
lock 8 -- COMMAND``) is given a list of them, one descriptor each.

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
    from collections.abc import Mapping, Sequence
    from typing import Any, NamedTuple
else:
    from ._named import NamedTuple

#: The environment variable naming the inherited handle.
ENV = "DOMDATA_LOCKED"
#: A value lists at most this many grants (nested hand-offs of as many domains).
MAX_GRANTS = 16
#: A longer value is not what domdata writes: ignored unparsed.
MAX_LENGTH = 1024 * MAX_GRANTS
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

        return json.dumps(self._object())

    def _object(self) -> dict[str, object]:
        domid, uuid = self.incarnation
        return {"fd": self.fd, "domid": domid, "uuid": uuid, "host": self.host}

    @staticmethod
    def encode_all(grants: Sequence[Grant]) -> str:
        """*grants* as one value: a grant alone as itself, several as a list."""
        import json

        if len(grants) == 1:
            return grants[0].encode()
        return json.dumps([grant._object() for grant in grants])

    @classmethod
    def parse(cls, text: str) -> Grant | None:
        """The grant *text* describes, or None if it is not one domdata writes."""
        grants = cls.parse_all(text)
        return grants[0] if len(grants) == 1 else None

    @classmethod
    def parse_all(cls, text: str) -> list[Grant]:
        """The grants *text* lists (one object, or a list of 1 to MAX_GRANTS);
        none at all if any part of it is not what domdata writes."""
        if len(text) > MAX_LENGTH:
            return []
        import json  # only a process started under a hand-off pays for it

        try:
            value = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." under MAX_LENGTH
            return []
        listed = value if isinstance(value, list) else [value]
        if not 0 < len(listed) <= MAX_GRANTS:
            return []
        grants = []
        for fields in listed:
            grant = cls._from_fields(fields)
            if grant is None:
                return []
            grants.append(grant)
        return grants

    @classmethod
    def _from_fields(cls, fields: object) -> Grant | None:
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


def inherited() -> list[Grant]:
    """The grants this process was started with (read once, at open)."""
    text = os.environ.get(ENV)
    return Grant.parse_all(text) if text else []


class HandOff(NamedTuple):
    """What ``ctx.handoff(domid)`` yields: the incarnation whose lock is held,
    and how to start a child process that uses it::

        with ctx.handoff(domid) as held:
            subprocess.run(argv, **held.popen_kwargs())
    """

    incarnation: Incarnation
    grant: Grant
    #: The other domains' locks this process holds through hand-offs, passed on too.
    others: tuple[Grant, ...] = ()

    @property
    def fd(self) -> int:
        """The descriptor the child must inherit."""
        return self.grant.fd

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """*base* (default: this process's environment) with ``DOMDATA_LOCKED`` set."""
        return {**(os.environ if base is None else base), ENV: Grant.encode_all([self.grant, *self.others])}

    def popen_kwargs(self, base: Mapping[str, str] | None = None) -> dict[str, Any]:
        """``env`` and ``pass_fds`` for ``subprocess.run`` / ``Popen``."""
        return {"env": self.environ(base), "pass_fds": (self.fd, *(other.fd for other in self.others))}
