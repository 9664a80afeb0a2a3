"""This host's boot: which one it is and when it started (DESIGN section 1,
"A reboot of the host ends every incarnation on it").

Read once per context, and only for a domain source whose domains die with
the host: the boot id tells SQLite's and PostgreSQL's items of this boot from
an earlier one's, the start time tells libxl's files (whose names libxl
fixes) written before it.
"""

from __future__ import annotations

import uuid as _uuid
from dataclasses import dataclass

from ._errors import SourceUnavailable

BOOT_ID = "/proc/sys/kernel/random/boot_id"
STAT = "/proc/stat"


@dataclass(frozen=True, slots=True)
class Boot:
    """One boot of this host."""

    #: The kernel's random id of this boot (a uuid, new at every boot).
    id: str
    #: When it started: ``btime`` of /proc/stat, seconds since the epoch.
    started: int


def current(source: str) -> Boot:
    """This host's boot; SourceUnavailable naming *source* if it cannot be read."""

    def fail(what: str) -> SourceUnavailable:
        return SourceUnavailable(
            f"cannot tell this host's boot ({what}): the domains of {source} die with the host, "
            "and their data with the boot it was written in"
        )

    try:
        with open(BOOT_ID, encoding="ascii") as file:
            text = file.read().strip()
        boot_id = str(_uuid.UUID(text))
    except (OSError, ValueError) as exc:
        raise fail(f"{BOOT_ID}: {getattr(exc, 'strerror', None) or 'not a uuid'}") from exc
    try:
        with open(STAT, encoding="ascii") as file:
            btime = next((line.split() for line in file if line.startswith("btime ")), None)
    except (OSError, ValueError) as exc:
        raise fail(f"{STAT}: {getattr(exc, 'strerror', None) or 'not text'}") from exc
    if btime is None or len(btime) != 2 or not btime[1].isdigit():
        raise fail(f"{STAT} has no btime line")
    return Boot(boot_id, int(btime[1]))
