"""Issue 10's harness: random command lines against every store, and the promises
that hold for each (README, "Exit statuses"):

- the exit status is one of the documented ones;
- stderr is at most one line and never a traceback;
- no file is created or changed outside the store (a snapshot of the temporary
  tree, which holds the store, the working directory and the output files);
- the store's domains and items are unchanged unless the command succeeded.

Each example draws a command (``store``, ``retrieve [-o FILE]``, ``unlink``,
``list``, ``show``, ``domain create/destroy/list``, ``reap``, ``registry``),
its DOM and USERID (valid, taken, malformed, other scripts' digits, control
characters), global options and ``DOMDATA_*`` environment values, stdin bytes,
and sometimes a store URL mutated by a suffix (a query, a fragment, an encoded
slash...). ``lock`` and ``watch`` are left out: they run other programs or
forever.

Most examples run in-process through click's CliRunner (fast; it sees what
``cli()`` prints and raises, but not ``main()``'s handling of signals, closed
descriptors and broken pipes, which tests/test_faults_output.py and
test_faults_waits.py drive); about one in eight runs ``domdata`` as a real
process (never with a NUL, which exec cannot pass).

Examples: ``DOMDATA_FAULTS_EXAMPLES`` per store (default 25) in the quick test,
which CI runs; the ``slow`` test runs only when ``DOMDATA_FAULTS_SLOW_EXAMPLES``
is set (1000 is about 10 s on SQLite, 30 s on libxl, 8 min on PostgreSQL).

Documented tolerances (each counted and reported as a hypothesis event):

- status 2 comes from click, which prints the usage, a hint and one ``Error:``
  line: for status 2 the harness asks for exactly one ``Error:`` line;
- a mutated URL that names another valid SQLite store creates that store's
  files when a command opens it (as the first use of any store does); every
  other file stays as it was.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

import domdata
from domdata.cli import cli
from domdata.stores.sqlite import path_of
from tests._faults import environment, snapshot
from tests.kits import STORE_KITS

DOCUMENTED = {0, 1, *range(2, 15), 126, 127, 130, 141}
QUICK = int(os.environ.get("DOMDATA_FAULTS_EXAMPLES", "25"))
SLOW = int(os.environ.get("DOMDATA_FAULTS_SLOW_EXAMPLES", "0"))
SQLITE_FILES = ("", "-wal", "-shm", "-journal", "-locks")


@dataclass
class Invocation:
    """One drawn command line: arguments, environment, stdin, how it runs."""

    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes | None = None
    url_suffix: str | None = None
    output: str | None = None
    real: bool = False


@dataclass
class Outcome:
    status: int
    stderr: str
    traceback: bool


odd_text = st.text(max_size=12)
valid_doms = st.sampled_from(["1", "2", "web1", "db1"])
doms = st.one_of(
    valid_doms,
    valid_doms,
    st.sampled_from(
        ["0", "4294967295", "4294967296", "-1", "01", "\u00b2", "\u0661", "\uff11", "1\n", " 1", ""]
    ),
    st.integers(0, 2**33).map(str),
    st.uuids().map(str),
    odd_text,
)
valid_userids = st.sampled_from(["xl", "libxl-json", "libvirt-xml", "note"])
userids = st.one_of(
    valid_userids,
    valid_userids,
    st.sampled_from(["domain-userdata-lock", "a/b", "*", "", "x" * 65, "caf\u00e9"]),
    st.text(max_size=70),
)
option_values = {
    "--lock-timeout": st.one_of(
        st.sampled_from(["0", "0.5", "nan", "inf", "-1", "1e300", "", "x"]), st.floats().map(str)
    ),
    "--max-item-size": st.one_of(
        st.sampled_from(["1", "16", "0", "-5", "1" + "0" * 40, "1e3", ""]), st.integers().map(str)
    ),
    "--host": st.one_of(st.sampled_from(["", "node1", "a\nb"]), odd_text),
    "--domains": st.sampled_from(["managed", "nonsense", "libvirt:", "libvirt:bogus", "", "Managed"]),
}
env_values = {
    "DOMDATA_LOCK_TIMEOUT": option_values["--lock-timeout"],
    "DOMDATA_MAX_ITEM_SIZE": option_values["--max-item-size"],
    "DOMDATA_HOST": option_values["--host"],
    "DOMDATA_DOMAINS": option_values["--domains"],
}
url_suffixes = st.one_of(
    st.sampled_from(["?mode=ro", "#frag", "?", "%2Fx", "/../x", "/", "%00", "?x=1#y", "/sub/x.db"]),
    st.text(alphabet="abc%?#/.:@ ", max_size=6),
)


@st.composite
def invocations(draw: st.DrawFn) -> Invocation:
    dom, userid = draw(doms), draw(userids)
    maybe = st.booleans()
    command = draw(
        st.sampled_from(
            [
                "store",
                "retrieve",
                "unlink",
                "list",
                "show",
                "create",
                "destroy",
                "domains",
                "reap",
                "registry",
            ],
        )
    )
    output = None
    if command == "store":
        args = ["store", dom, userid]
    elif command == "retrieve":
        args = ["retrieve", dom, userid]
        if draw(maybe):
            output = draw(st.sampled_from(["out", "missing/out", "."]))
            args += ["-o", output]
    elif command in ("unlink", "show"):
        args = [command, dom, userid]
    elif command == "list":
        args = ["list", *([dom] if draw(maybe) else []), *(["--json"] if draw(maybe) else [])]
        args += ["--all-hosts"] if draw(maybe) else []
    elif command == "create":
        args = ["domain", "create", *([draw(odd_text)] if draw(maybe) else [])]
        args += ["--domid", draw(doms)] if draw(maybe) else []
        args += ["--uuid", draw(doms)] if draw(maybe) else []
    elif command == "destroy":
        args = ["domain", "destroy", dom]
    elif command == "domains":
        args = ["domain", "list", *(["--json"] if draw(maybe) else [])]
    elif command == "reap":
        args = ["reap", *(["--dry-run"] if draw(maybe) else [])]
    else:
        args = ["registry"]
    options: list[str] = []
    for option in draw(st.lists(st.sampled_from(sorted(option_values)), max_size=1)):
        options += [option, draw(option_values[option])]
    env = {
        name: draw(env_values[name])
        for name in draw(st.lists(st.sampled_from(sorted(env_values)), max_size=1))
    }
    # The environment cannot hold a NUL (neither can exec's arguments).
    env = {name: value.replace("\0", "") for name, value in env.items()}
    stdin = draw(st.one_of(st.none(), st.binary(max_size=40)))
    suffix = draw(st.one_of(st.none(), st.none(), st.none(), url_suffixes))
    real = draw(st.sampled_from([False] * 7 + [True])) and not any("\0" in a for a in [*options, *args])
    return Invocation([*options, *args], env, stdin, suffix, output, real)


@dataclass
class Bench:
    """One store for a whole hypothesis run, in a temporary tree with the
    working directory and the output files."""

    kind: str
    url: str
    root: Path
    cwd: Path
    #: The store's own files or directories (none for PostgreSQL).
    store_paths: tuple[Path, ...]

    def owns(self, path: str) -> bool:
        if self.kind == "sqlite":
            return path in {str(self.store_paths[0]) + s for s in SQLITE_FILES}
        return any(path == str(p) or path.startswith(f"{p}/") for p in self.store_paths)

    def state(self) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        """The store's domains and items (live ones with their bytes)."""
        with domdata.open(self.url) as ctx:
            domains = sorted((d.domid, d.uuid, d.name) for d in ctx.domains.domains())
            live = {(d[0], d[1]) for d in domains}
            items = []
            for item in ctx.list(all_hosts=True):
                # Bytes where they can be read: a live domain of a store without hosts.
                readable = (item.domid, item.uuid) in live and item.host is None
                data = ctx.retrieve(item.domid, item.userid) if readable else None
                items.append((item.host or "", item.domid, item.uuid, item.userid, item.size, data))
        return [tuple(d) for d in domains], sorted(items, key=repr)


def _bench(kind: str, tmp_path: Path) -> Bench:
    root = tmp_path / "tree"
    cwd = root / "cwd"
    cwd.mkdir(parents=True)
    owned: tuple[Path, ...] = ()
    if kind == "sqlite":
        path = root / "store" / "domdata.db"
        path.parent.mkdir()
        url, owned = f"sqlite://{path}", (path,)
    elif kind == "libxl":
        path = root / "xen"
        path.mkdir()
        url, owned = f"libxl://{path}", (path,)
    else:
        url = STORE_KITS["postgresql"].url(tmp_path)
    with domdata.open(url) as ctx:
        for name in ("web1", "db1"):
            created = ctx.managed.create(name)
            ctx.store(created.domid, "xl", f"name = '{name}'\n".encode())
            ctx.store(created.domid, "libxl-json", b'{"c_info": {}}\0')
    return Bench(kind, url, root, cwd, owned)


def _run(bench: Bench, inv: Invocation) -> Outcome:
    url = bench.url + (inv.url_suffix or "")
    args = ["--store", url, *inv.args]
    if inv.output is not None:
        args[args.index("-o") + 1] = str(bench.root / inv.output)
    if inv.real:
        env = environment(None, **inv.env)
        done = subprocess.run(
            ["domdata", *args], input=inv.stdin, capture_output=True, env=env, cwd=bench.cwd, timeout=60
        )
        stderr = done.stderr.decode(errors="replace")
        return Outcome(done.returncode, stderr, "Traceback" in stderr)
    unset: dict[str, str | None] = {name: None for name in os.environ if name.startswith("DOMDATA_")}
    result = CliRunner().invoke(cli, args, input=inv.stdin, env=unset | dict(inv.env))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # What a process would print: the exception (the runner keeps the traceback).
        crash = f"Traceback: {type(result.exception).__name__}: {result.exception}\n"
        return Outcome(result.exit_code, result.stderr + crash, True)
    return Outcome(result.exit_code, result.stderr, False)


def _check(bench: Bench, inv: Invocation, record: Callable[[str], object] = print) -> None:
    files_before, state_before = snapshot(bench.root), bench.state()
    outcome = _run(bench, inv)
    files_after, state_after = snapshot(bench.root), bench.state()
    record(f"exit {outcome.status}")
    record("real process" if inv.real else "CliRunner")
    assert not outcome.traceback, (inv, outcome)
    assert outcome.status in DOCUMENTED, (inv, outcome)
    lines = outcome.stderr.splitlines()
    if outcome.status == 2 and len(lines) > 1:
        record("tolerated: click's usage error is several lines")
        assert sum(line.startswith("Error:") for line in lines) == 1, (inv, outcome)
    else:
        assert len(lines) <= 1, (inv, outcome)
    output = None if inv.output is None else str(bench.root / inv.output)
    changed = {
        path
        for path in files_before.keys() | files_after.keys()
        if files_before.get(path) != files_after.get(path)
        and not bench.owns(path)
        and not (path == output and outcome.status == 0)
    }
    if changed and bench.kind == "sqlite" and inv.url_suffix is not None:
        try:
            other = {path_of(bench.url + inv.url_suffix) + s for s in SQLITE_FILES}
        except domdata.InvalidURL:
            other = set()
        if changed <= other:
            record("a mutated URL named another SQLite store, which the command opened")
            changed = set()
    assert not changed, (inv, outcome, sorted(changed))
    if outcome.status != 0:
        assert state_after == state_before, (inv, outcome)


KINDS = ["sqlite", "libxl", "postgresql"]


def _harness(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, examples: int) -> None:
    bench = _bench(kind, tmp_path)
    monkeypatch.chdir(bench.cwd)
    seen: Counter[str] = Counter()

    def record(what: str) -> None:
        seen[what] += 1
        event(what)

    @settings(
        max_examples=examples,
        deadline=None,
        # Shrinking re-runs real processes for minutes: the raw example is reported.
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(inv=invocations())
    def check(inv: Invocation) -> None:
        _check(bench, inv, record)

    try:
        check()
    finally:
        # Shown with -s or -rP: what the run covered and what it tolerated.
        print(f"harness {kind}: {dict(sorted(seen.items()))}")


@pytest.mark.parametrize("kind", KINDS)
def test_every_command_line_keeps_the_promises(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kits: None
) -> None:
    _harness(kind, tmp_path, monkeypatch, QUICK)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_command_line_keeps_the_promises_long(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kits: None
) -> None:
    if not SLOW:
        pytest.skip("set DOMDATA_FAULTS_SLOW_EXAMPLES to the number of examples per store")
    _harness(kind, tmp_path, monkeypatch, SLOW)


def test_the_harness_sees_a_broken_promise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks can fail: a file written outside the store (an output file the
    invocation does not declare) is caught."""
    bench = _bench("sqlite", tmp_path)
    monkeypatch.chdir(bench.cwd)
    stray = bench.cwd / "stray"
    with pytest.raises(AssertionError, match="stray"):
        _check(bench, Invocation(["retrieve", "1", "xl", "-o", str(stray)]))
    assert stray.read_bytes() == b"name = 'web1'\n"
