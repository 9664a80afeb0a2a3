"""``domdata changes`` and ``list --with-rev`` on the command line, as real processes."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

import domdata

BIN = Path(sys.executable).parent
#: A guard against a hang, never a speed assertion.
PATIENCE = 60
FIELDS = ["rev", "op", "host", "domid", "uuid", "userid", "size"]


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'cli.db'}"


@pytest.fixture
def env(store: str) -> dict[str, str]:
    return {**os.environ, "DOMDATA_STORE": store, "PATH": f"{BIN}:{os.environ['PATH']}"}


@pytest.fixture
def ctx(store: str) -> Iterator[domdata.Context]:
    with domdata.open(store) as opened:
        yield opened


def shell(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["domdata", *args], capture_output=True, text=True, env=env, timeout=PATIENCE)


class Lines:
    """The lines a process prints, read by a thread as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        stdout = process.stdout
        assert stdout is not None
        threading.Thread(target=self._read, args=(stdout,), daemon=True).start()

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self._lines.put(line)

    def next(self) -> str:
        try:
            return self._lines.get(timeout=PATIENCE)
        except queue.Empty:
            raise AssertionError("no line from domdata changes --follow") from None


def test_follow_json_is_read_line_by_line_as_changes_commit(
    ctx: domdata.Context, env: dict[str, str]
) -> None:
    dom = ctx.managed.create("web1")
    ctx.store(dom.domid, "before", b"1")
    since = shell(env, "list", "--with-rev", "--json").stdout
    rev = json.loads(since)["rev"]
    process = subprocess.Popen(
        ["domdata", "changes", "--follow", "--json", "--since", str(rev)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines = Lines(process)
    try:
        # Each change is read before the next one is made: the lines come as
        # the changes commit, not when the command ends.
        for n, userid in enumerate(["a", "b", "c"]):
            ctx.store(dom.domid, userid, b"x" * (n + 1))
            record = json.loads(lines.next())
            assert list(record) == FIELDS
            assert record == {
                "rev": rev + n + 1,
                "op": "store",
                "host": None,
                "domid": dom.domid,
                "uuid": dom.uuid,
                "userid": userid,
                "size": n + 1,
            }
        ctx.destroy(dom.domid)
        removed = [json.loads(lines.next()) for _ in range(4)]
        assert sorted(r["userid"] for r in removed) == ["a", "b", "before", "c"]
        assert {(r["op"], r["size"]) for r in removed} == {("destroy", None)}
    finally:
        process.terminate()
        process.wait(PATIENCE)


def test_changes_readable_and_json(ctx: domdata.Context, env: dict[str, str]) -> None:
    dom = ctx.managed.create("web1")
    ctx.store(dom.domid, "xl", b"abc")
    ctx.unlink(dom.domid, "xl")
    readable = shell(env, "changes", "web1")
    assert readable.returncode == 0
    header, stored, deleted = readable.stdout.splitlines()
    assert header.split() == ["REV", "OP", "DOMID", "UUID", "SIZE", "USERID"]
    assert stored.split() == ["1", "store", str(dom.domid), dom.uuid, "3", "xl"]
    assert deleted.split() == ["2", "delete", str(dom.domid), dom.uuid, "-", "xl"]
    lines = shell(env, "changes", "--json", "--since", "1").stdout.splitlines()
    assert [json.loads(line)["op"] for line in lines] == ["delete"]


def test_a_lost_revision_has_its_own_exit_status(ctx: domdata.Context, env: dict[str, str]) -> None:
    dom = ctx.managed.create()
    ctx.store(dom.domid, "xl", b"abc")
    lost = shell(env, "changes", "--since", "5")
    assert lost.returncode == 17
    assert lost.stdout == ""
    assert lost.stderr.count("\n") == 1
    assert "revision 5 is newer than this store's newest (1)" in lost.stderr
    assert shell(env, "changes", "--since", "-1").returncode == 2


def test_list_with_rev(ctx: domdata.Context, env: dict[str, str]) -> None:
    dom = ctx.managed.create("web1")
    ctx.store(dom.domid, "xl", b"abc")
    plain = json.loads(shell(env, "list", "--json").stdout)
    assert isinstance(plain, list)
    assert [item["userid"] for item in plain] == ["xl"]
    wrapped = json.loads(shell(env, "list", "web1", "--with-rev", "--json").stdout)
    assert wrapped == {"rev": 1, "items": plain}
    assert shell(env, "list", "--with-rev").stdout.splitlines()[0] == "rev 1"
