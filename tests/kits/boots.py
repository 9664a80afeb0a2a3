"""Simulated boots of this host, as DESIGN section 1 says: a process runs in a
private mount namespace with other files bind-mounted over
``/proc/sys/kernel/random/boot_id`` and ``/proc/stat``.

Needs unshare(1) and the right to mount (root, or a user namespace): where
they are missing the test is skipped, except in CI (``CI`` set), where the
test fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid as _uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

BOOT_ID = "/proc/sys/kernel/random/boot_id"
STAT = "/proc/stat"
# Mount the boot's two files over the host's, then run the command.
_ENTER = f'mount --bind "$1" {BOOT_ID} && mount --bind "$2" {STAT} && shift 2 && exec "$@"'


def host_started() -> int:
    """This host's real boot time (``btime``)."""
    match = re.search(r"^btime (\d+)$", Path(STAT).read_text(), re.MULTILINE)
    assert match is not None
    return int(match[1])


@dataclass(frozen=True)
class Boot:
    """A boot to run processes in: its id, its start time and their files."""

    id: str
    started: int
    boot_id_file: Path
    stat_file: Path


class Boots:
    """Makes boots in one directory and runs commands inside them."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._made = 0
        unshare = shutil.which("unshare")
        self._unshare = [unshare, "--mount", "--propagation", "private"] if unshare else []
        if unshare and os.geteuid() != 0:
            self._unshare.insert(1, "--map-root-user")
        probe = self.new(host_started())
        why = "unshare(1) is not installed" if not unshare else self._cannot_enter(probe)
        if why is not None:
            if os.environ.get("CI"):
                pytest.fail(f"cannot simulate a reboot: {why}")
            pytest.skip(f"cannot simulate a reboot: {why}")

    def _cannot_enter(self, boot: Boot) -> str | None:
        done = self.run(boot, "cat", BOOT_ID)
        if done.returncode != 0:
            return done.stderr.strip() or f"exit status {done.returncode}"
        if done.stdout.strip() != boot.id:
            return f"{BOOT_ID} still reads {done.stdout.strip()} in the namespace"
        return None

    def new(self, started: int, *, boot_id: str | None = None, stat: str | None = None) -> Boot:
        """A boot that started at *started*: a fresh boot id and a copy of
        /proc/stat with that btime (or the texts given, to break them)."""
        self._made += 1
        made = self.dir / f"boot-{self._made}"
        made.mkdir(parents=True)
        ident = str(_uuid.uuid4())
        (made / "boot_id").write_text(f"{ident}\n" if boot_id is None else boot_id)
        real = Path(STAT).read_text()
        (made / "stat").write_text(
            re.sub(r"^btime \d+$", f"btime {started}", real, flags=re.MULTILINE) if stat is None else stat
        )
        return Boot(ident, started, made / "boot_id", made / "stat")

    def command(self, boot: Boot, *argv: str) -> list[str]:
        """The command line that runs *argv* in *boot* (for Popen)."""
        return [*self._unshare, "sh", "-c", _ENTER, "sh", str(boot.boot_id_file), str(boot.stat_file), *argv]

    def run(self, boot: Boot, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run *argv* in *boot*; its output as text."""
        return subprocess.run(self.command(boot, *argv), capture_output=True, text=True, timeout=120)

    def domdata(self, boot: Boot, *args: str) -> subprocess.CompletedProcess[str]:
        """The ``domdata`` command line, run in *boot*."""
        return self.run(boot, sys.executable, "-m", "domdata", *args)
