"""Issue 12: the single-item commands' fast path (``domdata._cli.fast``) behaves
exactly as the click command line: the same command line, run once through the
``domdata`` entry point and once through ``domdata.cli.main`` (a script of the
same name, so that click's usage lines match), on the same store in the same
state, gives the same stdout, stderr and status and leaves the same items.

Real processes: the fast path's point is a whole process, and its rules on
output (a full disk, a closed stdout, a reader gone) only show there."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import domdata
from domdata._cli import fast
from tests._faults import environment

BIN = Path(sys.executable).parent
WEB1 = "6695eb01-f6a4-8304-79aa-97f2502e193f"
DB1 = "0b53c7d2-5f0e-4f4e-9d43-38a1e4b1f6a2"
EXAMPLES = int(os.environ.get("DOMDATA_FAST_EXAMPLES", "25"))

doms = st.sampled_from(
    [
        *("web1", "1", "2", "01", "99", "0", "4294967295", "4294967296", WEB1, WEB1.upper(), DB1),
        *("00000000-0000-0000-0000-000000000000", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"),
        *("", " 1", "\u00b2", "\uff11", "a\nb", "-x", "-", "caf\u00e9", "nosuch"),
    ]
)
userids = st.sampled_from(["xl", "note", "", "a/b", "domain-userdata-lock", "x" * 65, "caf\u00e9", "-q"])
values = {
    "--lock-timeout": st.sampled_from(["0", "5", " 2 ", "1_0", "nan", "inf", "-1", "x", ""]),
    "--max-item-size": st.sampled_from(["1", "3", "16", "0", "x", " 7", "1e3", "", "1000000001"]),
    "--host": st.sampled_from(["", "node1", "a\tb"]),
    "--domains": st.sampled_from(["managed", "nonsense", "", "libvirt:"]),
    "--store": st.sampled_from(["STORE", "bogus://x", "sqlite:///nonexistent-dir/x.db", "sqlite:x?y", ""]),
}
env_names = {
    "--lock-timeout": "DOMDATA_LOCK_TIMEOUT",
    "--max-item-size": "DOMDATA_MAX_ITEM_SIZE",
    "--host": "DOMDATA_HOST",
    "--domains": "DOMDATA_DOMAINS",
}
#: Where stdout goes: a pipe read whole, a full disk, a closed descriptor, a pipe nobody reads.
OUTPUTS = ["pipe", "full", "closed", "gone"]


@st.composite
def command_lines(draw: st.DrawFn) -> tuple[list[str], dict[str, str], bytes | None, str]:
    command = draw(st.sampled_from(["retrieve", "store", "unlink", "list"]))
    args = [command, draw(doms)]
    if command != "list":
        args.append(draw(userids))
    if command == "store" and draw(st.booleans()):
        args.append(draw(st.sampled_from(["-", "input", "missing-file", "."])))
    extra = draw(st.sampled_from([[], [], [], ["-q"], ["--quiet"], ["--json"], ["-o", "out"], ["--", "x"]]))
    args = [*args, *extra] if draw(st.booleans()) else [args[0], *extra, *args[1:]]
    options: list[str] = []
    for name in draw(st.lists(st.sampled_from(sorted(values)), max_size=2)):
        value = draw(values[name])
        options += [f"{name}={value}"] if draw(st.booleans()) else [name, value]
    output = draw(st.sampled_from(OUTPUTS))
    # Help and version on a full disk or a closed stdout are a traceback from
    # click on both paths (its own output rules), with other frames: not drawn.
    informative = [["-h"], ["--version"]] if output == "pipe" else []
    options += draw(st.sampled_from([[], [], ["--not-durable"], ["--durable"], *informative]))
    env = {
        env_names[name]: draw(values[name])
        for name in draw(st.lists(st.sampled_from(sorted(env_names)), max_size=2))
    }
    stdin = draw(st.one_of(st.none(), st.binary(max_size=20)))
    return [*options, *args], env, stdin, output


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with two managed domains and three items; copied before every run."""
    path = tmp_path_factory.mktemp("template") / "domdata.db"
    with domdata.open(f"sqlite://{path}") as ctx:
        ctx.managed.create("web1", domid=1, uuid=WEB1)
        ctx.managed.create("db1", domid=2, uuid=DB1)
        ctx.store(1, "xl", b"name = 'web1'\n")
        ctx.store(1, "note", b"\x00\x01binary")
        ctx.store(2, "xl", b"name = 'db1'\n")
    return path


@pytest.fixture(scope="module")
def click_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``domdata`` that always takes the click path (same program name in usage lines)."""
    script = tmp_path_factory.mktemp("click") / "domdata"
    script.write_text(f"#!{sys.executable}\nfrom domdata.cli import main\nmain()\n")
    script.chmod(0o755)
    return script


def _items(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return sorted(db.execute("SELECT domid, uuid, userid, data FROM userdata"))


def _run(
    program: Path,
    work: Path,
    template: Path,
    args: list[str],
    env: dict[str, str],
    stdin: bytes | None,
    output: str,
) -> tuple[int, bytes, bytes, list[tuple[Any, ...]]]:
    """*program* ARGS on a fresh copy of *template*: status, stdout, stderr, items after."""
    store = work / "store"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir()
    shutil.copy(template, store / "domdata.db")
    (work / "input").write_bytes(b"from a file\n")
    (work / "out").unlink(missing_ok=True)
    url = f"sqlite://{store / 'domdata.db'}"
    argv = [str(program), *(url if a == "STORE" else a.replace("STORE", url) for a in args)]
    run_env = environment(url, **env)
    streams: dict[str, Any] = {"stdout": subprocess.PIPE}
    if output == "full":
        streams["stdout"] = open("/dev/full", "wb")  # noqa: SIM115 - closed below
    elif output == "closed":
        argv = ["sh", "-c", 'exec "$0" "$@" >&-', *argv]
    elif output == "gone":
        read, write = os.pipe()
        os.close(read)
        streams["stdout"] = write
    try:
        done = subprocess.run(
            argv, input=stdin, stderr=subprocess.PIPE, env=run_env, cwd=work, timeout=60, **streams
        )
    finally:
        if output == "full":
            streams["stdout"].close()
        elif output == "gone":
            os.close(streams["stdout"])
    return done.returncode, done.stdout or b"", done.stderr, _items(store / "domdata.db")


def _same(
    tmp_path: Path,
    template: Path,
    click_script: Path,
    args: list[str],
    env: dict[str, str],
    stdin: bytes | None,
    output: str,
) -> bool:
    """Assert both paths agree; whether the fast path took the command line (its
    FILE aside: one that cannot be opened goes to click too)."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    fast_run = _run(BIN / "domdata", work, template, args, env, stdin, output)
    click_run = _run(click_script, work, template, args, env, stdin, output)
    assert fast_run == click_run, (args, env, stdin, output)
    assert b"Traceback" not in fast_run[2], (args, fast_run)
    url = f"sqlite://{work / 'store' / 'domdata.db'}"
    probe_env = environment(url, **env)
    argv = [url if a == "STORE" else a for a in args]
    return fast.parse(argv, probe_env) is not None


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize(
    "args",
    [
        ["retrieve", "web1", "xl"],
        ["retrieve", "1", "note"],
        ["retrieve", WEB1, "xl"],
        ["retrieve", "web1", "absent"],
        ["retrieve", "nosuch", "xl"],
        ["retrieve", "99", "xl"],
        ["store", "db1", "note"],
        ["store", "2", "xl", "input"],
        ["store", "2", "xl", "missing-file"],
        ["unlink", "web1", "xl"],
        ["unlink", "-q", "web1", "absent"],
        ["unlink", "web1", "absent"],
        ["list", "web1"],
        ["list", "2"],
        ["list", "nosuch"],
        ["--max-item-size", "3", "store", "web1", "xl"],
        ["--lock-timeout=0", "--not-durable", "list", "1"],
        ["--store", "bogus://x", "list", "1"],
        ["--domains", "nonsense", "retrieve", "1", "xl"],
    ],
)
def test_the_fast_path_and_click_agree(
    tmp_path: Path, template: Path, click_script: Path, args: list[str], output: str
) -> None:
    assert _same(tmp_path, template, click_script, args, {}, b"stdin data\n", output)


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["retrieve", "web1", "xl"], {"DOMDATA_LOCK_TIMEOUT": "nan"}),
        (["retrieve", "web1", "xl"], {"DOMDATA_MAX_ITEM_SIZE": "0"}),
        (["retrieve", "web1", "xl"], {"DOMDATA_HOST": "a\tb"}),
        (["retrieve", "\u00b2", "xl"], {}),
        (["retrieve", "4294967296", "xl"], {}),
        (["retrieve", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", "xl"], {}),
        (["retrieve", "web1"], {}),
        (["retrieve", "web1", "xl", "-o", "out"], {}),
        (["--help"], {}),
        (["retrieve", "web1", "xl"], {"DOMDATA_LOCKED": '{"pid": 1}'}),
        (
            ["retrieve", "web1", "xl"],
            {"_DOMDATA_COMPLETE": "bash_complete", "COMP_WORDS": "domdata retr", "COMP_CWORD": "1"},
        ),
    ],
)
def test_what_the_fast_path_does_not_take_goes_to_click(
    tmp_path: Path, template: Path, click_script: Path, args: list[str], env: dict[str, str]
) -> None:
    assert not _same(tmp_path, template, click_script, args, env, None, "pipe")


def test_many_command_lines_agree(tmp_path: Path, template: Path, click_script: Path) -> None:
    taken: Counter[bool] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(line=command_lines())
    def agree(line: tuple[list[str], dict[str, str], bytes | None, str]) -> None:
        args, env, stdin, output = line
        taken[_same(tmp_path, template, click_script, args, env, stdin, output)] += 1

    agree()
    # Both paths were exercised: the comparison is not click against click.
    assert taken[True], taken
    assert taken[False], taken


def test_the_fast_path_knows_the_lock_hand_off_variable() -> None:
    from domdata._handoff import ENV

    assert fast.LOCKED_ENV == ENV
