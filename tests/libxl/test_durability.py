"""The libxl store's write, as the kernel sees it: the temporary file is
fsynced before it is renamed over the item, and the directory after."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_STORE = """
import sys, domdata
with domdata.open(sys.argv[1]) as ctx:
    dom = ctx.managed.create()
    print(dom.domid, dom.uuid, flush=True)
    ctx.store(dom.domid, "xl", b"config")
"""


def _trace(url: str, log: Path) -> list[str]:
    if shutil.which("strace") is None:
        if os.environ.get("CI"):
            raise AssertionError("strace is missing (scripts/test.sh installs it)")
        pytest.skip("strace is not installed")
    subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-y",
            "-o",
            str(log),
            "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2",
            sys.executable,
            "-c",
            _STORE,
            url,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return log.read_text().splitlines()


def test_the_temp_file_is_synced_then_renamed_then_the_directory_synced(tmp_path: Path) -> None:
    xen = tmp_path / "xen"
    xen.mkdir()
    lines = _trace(f"libxl://{xen}", tmp_path / "strace.log")
    item = re.compile(r"userdata-[dn]\.1\.[0-9a-f-]{36}\.xl")
    events = []
    for line in lines:
        if not item.search(line) and f"<{xen}>" not in line:
            continue
        if "fsync(" in line or "fdatasync(" in line:
            events.append(
                "sync dir" if f"<{xen}>" in line else "sync temp" if "userdata-n." in line else line
            )
        elif "rename" in line and "userdata-n." in line and "userdata-d." in line:
            events.append("rename")
    # The item's write, after the managed domain's record was written the same way.
    assert events[-3:] == ["sync temp", "rename", "sync dir"], lines
