"""Handing a held lock to child processes (DESIGN section 8), with real processes on
SQLite, libxl files and PostgreSQL: ``domdata lock DOM -- COMMAND`` and ``ctx.handoff()``.

- proven, not claimed: a copied or made-up ``DOMDATA_LOCKED`` without the
  inherited handle waits like any caller (the forged-environment race loses
  nothing); a malformed one is ignored, never a traceback;
- about the store, not its spelling: every spelling of one store's URL is
  adopted, a relative path in another directory names another store, and on
  PostgreSQL another host is another lock;
- held while COMMAND runs: ``domdata lock`` SIGKILLed leaves the lock held
  until COMMAND exits; TERM, INT and HUP are passed on;
- re-checked: after ``domain destroy`` inside the block every later call, in
  every process, gets DomainNotFound; on PostgreSQL, a call after the lock's
  keeper died fails instead of running unlocked.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import domdata
from domdata._handoff import ENV, MAX_LENGTH, Grant
from tests.kits import STORE_KITS, StoreKit

BIN = Path(sys.executable).parent
#: A short lock timeout: a call that is not adopted fails with LockTimeout (6) fast.
SHORT = "0.3"


@pytest.fixture(params=sorted(STORE_KITS))
def url(request: pytest.FixtureRequest, tmp_path: Path, kits: None) -> str:
    kit: StoreKit = STORE_KITS[request.param]
    return kit.url(tmp_path)


def environ(url: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != ENV}
    return {**base, "DOMDATA_STORE": url, "PATH": f"{BIN}:{os.environ['PATH']}", **extra}


@pytest.fixture
def env(url: str) -> dict[str, str]:
    return environ(url)


def sh(env: dict[str, str], script: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def created(url: str, host: str | None = None) -> str:
    with domdata.open(url, host=host) as ctx:
        return str(ctx.managed.create().domid)


def wait_for(path: Path) -> None:
    """Wait for a process of the test to create *path* (a guard, not an assertion on time)."""
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def one_line_error(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) <= 1


# -- proven, not claimed ------------------------------------------------------------


def test_the_command_uses_the_lock_and_an_outsider_waits(env: dict[str, str], url: str) -> None:
    dom = created(url)
    script = (
        f"printf inside | domdata store {dom} xl && domdata retrieve {dom} xl && echo && "
        f'env -u {ENV} domdata --lock-timeout {SHORT} retrieve {dom} xl; echo "outsider=$?"'
    )
    result = sh(env, f"domdata lock {dom} -- sh -c '{script}'")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["inside", "outsider=6"]


@pytest.mark.slow
def test_forged_environment_race_loses_no_update(env: dict[str, str], url: str) -> None:
    """Two read-modify-write loops of 60 under ``domdata lock``; the second runs with a
    hand-off variable copied from a real one (no handle): 120 of 120 updates survive.
    (PostgreSQL: 2 x 20, as each ``domdata lock`` there starts a keeper process.)"""
    dom = created(url)
    copied = sh(env, f"domdata lock {dom} -- printenv {ENV}").stdout.strip()
    assert Grant.parse(copied) is not None
    rounds = 20 if url.startswith("postgresql") else 60
    step = f'v=$(domdata retrieve {dom} n); printf "%s" $(( ${{v:-0}} + 1 )) | domdata store {dom} n'
    loop = f"for i in $(seq {rounds}); do domdata lock {dom} -- sh -c '{step}' || exit 1; done"
    honest = subprocess.Popen(["sh", "-c", loop], env=env)
    forged = subprocess.Popen(["sh", "-c", loop], env={**env, ENV: copied})
    assert [honest.wait(timeout=900), forged.wait(timeout=900)] == [0, 0]
    assert sh(env, f"domdata retrieve {dom} n").stdout == str(2 * rounds)


MADE_UP = [
    '{"fd": 0, "domid": DOM, "uuid": "UUID", "host": HOST}',
    '{"fd": 1, "domid": DOM, "uuid": "UUID", "host": HOST}',
    '{"fd": 3, "domid": DOM, "uuid": "UUID", "host": HOST}',
    '{"fd": 99, "domid": DOM, "uuid": "UUID", "host": HOST}',
    '{"fd": 2147483647, "domid": DOM, "uuid": "UUID", "host": HOST}',
    '{"fd": 99999999999999999999, "domid": DOM, "uuid": "UUID", "host": HOST}',
    '{"fd": -1, "domid": DOM, "uuid": "UUID", "host": HOST}',
    '{"fd": 3, "domid": -1, "uuid": "UUID", "host": HOST}',
    '{"fd": 3, "domid": DOM, "uuid": "../../../etc/passwd", "host": HOST}',
    '{"fd": 3, "domid": DOM, "uuid": "UUID", "host": 7}',
    '{"fd": "3", "domid": DOM, "uuid": "UUID"}',
    '{"pid": 1, "store": "URL", "domid": DOM, "uuid": "UUID"}',
    "[3]",
    "null",
    "{",
    "garbage",
    "\u00e9\u00e9",
    "x" * 100_000,
    "[" * 1000,
    '{"fd": ' * 200,
    '[{"fd": 3, "domid": DOM, "uuid": "UUID", "host": HOST}]',
    '[{"fd": 3, "domid": DOM, "uuid": "UUID", "host": HOST},'
    ' {"fd": 4, "domid": DOM, "uuid": "UUID", "host": HOST}]',
    "[]",
]


def test_a_made_up_hand_off_waits_and_never_tracebacks(env: dict[str, str], url: str) -> None:
    with domdata.open(url) as ctx:
        dom = ctx.managed.create()
        host = getattr(ctx._store, "host", None)
        values = [
            value.replace("DOM", str(dom.domid))
            .replace("UUID", dom.uuid)
            .replace("URL", url)
            .replace("HOST", "null" if host is None else f'"{host}"')
            for value in MADE_UP
        ]
        with ctx.lock(dom.domid):
            for value in values:
                call = f"domdata --lock-timeout {SHORT} store {dom.domid} xl </dev/null 3</dev/null"
                held = sh({**env, ENV: value}, call)
                assert held.returncode == 6, (value, held.stderr)
                one_line_error(held.stderr)
        free = sh({**env, ENV: values[0]}, f"printf free | domdata store {dom.domid} xl")
        assert free.returncode == 0, free.stderr
        assert ctx.retrieve(dom.domid, "xl") == b"free"


def test_a_handle_opened_by_the_forger_itself_waits(tmp_path: Path, kits: None) -> None:
    """A descriptor of the very lock file, opened by the process itself (not
    inherited from the holder), holds nothing: its calls wait."""
    url = STORE_KITS["sqlite"].url(tmp_path)
    dom = created(url)
    with domdata.open(url) as ctx:
        uuid = ctx.domains.find(dom).uuid
        locks = str(tmp_path / "domdata.db-locks")
        forged = Grant(3, domdata.Incarnation(int(dom), uuid), None).encode()
        with ctx.lock(int(dom)):
            result = sh(
                {**environ(url), ENV: forged}, f"domdata --lock-timeout {SHORT} retrieve {dom} xl 3<>{locks}"
            )
        assert result.returncode == 6, result.stderr


def test_a_deeply_nested_value_is_not_a_grant() -> None:
    """Short enough to be parsed, too deep for the JSON decoder's recursion."""
    assert Grant.parse("[" * MAX_LENGTH) is None


def test_grants_of_several_domains_are_one_value() -> None:
    grants = [Grant(3, domdata.Incarnation(n, str(uuid.UUID(int=n))), None) for n in (1, 2)]
    assert Grant.parse_all(Grant.encode_all(grants[:1])) == grants[:1]
    assert Grant.encode_all(grants[:1]) == grants[0].encode()  # one domain: one object, as before
    assert Grant.parse_all(Grant.encode_all(grants)) == grants


@pytest.mark.parametrize(
    "value",
    [
        "[]",
        '[{"fd": 3, "domid": 1, "uuid": "00000000-0000-0000-0000-000000000001", "host": null}, 3]',
        '[{"fd": 3, "domid": 1, "uuid": "00000000-0000-0000-0000-000000000001", "host": null}, {}]',
        '[[{"fd": 3, "domid": 1, "uuid": "00000000-0000-0000-0000-000000000001", "host": null}]]',
        "[" + ", ".join(['{"fd": 3, "domid": 1, "uuid": "00000000-0000-0000-0000-000000000001"}'] * 17) + "]",
    ],
)
def test_a_list_with_anything_domdata_does_not_write_grants_nothing(value: str) -> None:
    assert Grant.parse_all(value) == []


def test_nested_locks_of_two_domains_hand_both_on(env: dict[str, str], url: str) -> None:
    first, second = created(url), created(url)
    inner = f"domdata --lock-timeout {SHORT}"
    both = f"printf a | {inner} store {first} xl && printf b | {inner} store {second} xl"
    result = sh(env, f"domdata lock {first} -- domdata lock {second} -- sh -c '{both}'")
    assert result.returncode == 0, result.stderr
    assert sh(env, f"domdata retrieve {first} xl; domdata retrieve {second} xl").stdout == "ab"


def test_open_ignores_a_malformed_hand_off(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dom = int(created(url))
    monkeypatch.setenv(ENV, '{"fd": 0, "domid": 1')
    with domdata.open(url) as ctx:
        ctx.store(dom, "xl", b"fine")
        assert ctx.retrieve(dom, "xl") == b"fine"


# -- about the store, not its spelling ------------------------------------------------


def test_every_spelling_of_one_sqlite_file_is_one_store(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    db = tmp_path / "a" / "x.db"
    url = f"sqlite://{db}"
    dom = created(url)
    spellings = [f"sqlite:///{db}", f"sqlite://{tmp_path}/a/./x.db", "sqlite:x.db", "sqlite:../a/x.db"]
    calls = " && ".join(
        f"printf {n} | domdata --lock-timeout {SHORT} --store {s} store {dom} xl"
        for n, s in enumerate(spellings)
    )
    result = sh(environ(url), f"cd {tmp_path / 'a'} && domdata lock {dom} -- sh -c '{calls}'")
    assert result.returncode == 0, result.stderr
    with domdata.open(url) as ctx:
        assert ctx.retrieve(int(dom), "xl") == str(len(spellings) - 1).encode()


@pytest.mark.parametrize("scheme", ["sqlite", "libxl"])
def test_a_relative_path_in_another_directory_is_another_store(tmp_path: Path, scheme: str) -> None:
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    name = "x.db" if scheme == "sqlite" else "xen"
    if scheme == "libxl":
        (here / name).mkdir()
        (there / name).mkdir()
    url = f"{scheme}://{here / name}"
    dom = created(url)
    # Inside the lock held on here/NAME, a child in there/ names there/NAME: another
    # store, which has no such domain. It must neither adopt nor write here.
    child = (
        f"cd {there} && printf stray | domdata --lock-timeout {SHORT} --store {scheme}:{name} store {dom} xl"
    )
    result = sh(environ(url), f"cd {here} && domdata lock {dom} -- sh -c '{child}; echo status=$?'")
    assert result.stdout.strip() == "status=3", result.stderr
    with domdata.open(url) as ctx:
        assert ctx.retrieve(int(dom), "xl") == b""


def test_a_libxl_directory_spelled_otherwise_is_one_store(tmp_path: Path) -> None:
    (tmp_path / "xen").mkdir()
    url = f"libxl://{tmp_path / 'xen'}"
    dom = created(url)
    calls = (
        f"printf 1 | domdata --lock-timeout {SHORT} --store libxl:///{tmp_path}/./xen store {dom} xl && "
        f"cd {tmp_path} && printf 2 | domdata --lock-timeout {SHORT} --store libxl:xen store {dom} xl"
    )
    result = sh(environ(url), f"domdata lock {dom} -- sh -c '{calls}'")
    assert result.returncode == 0, result.stderr
    with domdata.open(url) as ctx:
        assert ctx.retrieve(int(dom), "xl") == b"2"


def test_postgresql_another_host_is_another_lock(tmp_path: Path, kits: None) -> None:
    url = STORE_KITS["postgresql"].url(tmp_path)
    dom = created(url, host="xen-09")
    with domdata.open(url, host="xen-07") as other:
        other.managed.create(domid=int(dom))
    env = environ(url, DOMDATA_HOST="xen-09")
    # Inside xen-09's lock: a call for xen-07 is not adopted and needs xen-07's
    # own lock, which is free; the domain lives there: no false DomainNotFound.
    free = f"printf seven | DOMDATA_HOST=xen-07 domdata --lock-timeout {SHORT} store {dom} xl"
    result = sh(env, f"domdata lock {dom} -- sh -c '{free}'")
    assert result.returncode == 0, result.stderr
    with domdata.open(url, host="xen-07") as other:
        assert other.retrieve(int(dom), "xl") == b"seven"
        # xen-07's lock held elsewhere: the call inside xen-09's block waits and times out.
        with other.lock(int(dom)):
            busy = sh(env, f"domdata lock {dom} -- sh -c 'DOMDATA_HOST=xen-07 {free.split('| ', 1)[1]}'")
        assert busy.returncode == 6, busy.stderr
        one_line_error(busy.stderr)


# -- held while COMMAND runs ------------------------------------------------------------


def test_killing_domdata_lock_keeps_the_lock_until_the_command_exits(
    env: dict[str, str], url: str, tmp_path: Path
) -> None:
    dom = created(url)
    started, go, done = tmp_path / "started", tmp_path / "go", tmp_path / "done"
    command = (
        f"touch {started}; while [ ! -e {go} ]; do sleep 0.02; done; "
        f"printf command | domdata store {dom} xl && touch {done}"
    )
    locker = subprocess.Popen(["domdata", "lock", dom, "--", "sh", "-c", command], env=env)
    wait_for(started)
    locker.kill()
    assert locker.wait(timeout=60) == -signal.SIGKILL
    probe = sh(env, f"domdata --lock-timeout {SHORT} store {dom} xl </dev/null")
    assert probe.returncode == 6, probe.stderr
    writer = subprocess.Popen(["sh", "-c", f"printf outsider | domdata store {dom} xl"], env=env)
    go.touch()
    assert writer.wait(timeout=120) == 0
    wait_for(done)
    assert sh(env, f"domdata retrieve {dom} xl").stdout == "outsider"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_term_int_and_hup_are_passed_on(tmp_path: Path, signum: int) -> None:
    url = STORE_KITS["sqlite"].url(tmp_path)
    dom = created(url)
    ready = tmp_path / "ready"
    command = f'trap "exit {40 + signum}" {signum}; touch {ready}; while :; do sleep 0.02; done'
    locker = subprocess.Popen(["domdata", "lock", dom, "--", "sh", "-c", command], env=environ(url))
    wait_for(ready)
    locker.send_signal(signum)
    assert locker.wait(timeout=60) == 40 + signum


def test_lock_exits_with_the_signal_that_killed_the_command(tmp_path: Path) -> None:
    url = STORE_KITS["sqlite"].url(tmp_path)
    dom = created(url)
    result = sh(environ(url), f"domdata lock {dom} -- sh -c 'kill -HUP $$'")
    assert result.returncode == 128 + signal.SIGHUP


# -- re-checked -----------------------------------------------------------------------------


def test_destroy_inside_the_block_ends_the_domain_for_every_process(env: dict[str, str], url: str) -> None:
    dom = created(url)
    script = (
        f"printf x | domdata store {dom} xl && domdata domain destroy {dom} && "
        f'printf y | domdata --lock-timeout {SHORT} store {dom} xl; echo "store=$?"; '
        f'sh -c "domdata --lock-timeout {SHORT} retrieve {dom} xl; echo retrieve=\\$?"'
    )
    result = sh(env, f"domdata lock {dom} -- sh -c '{script}'")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["store=3", "retrieve=3"]
    with domdata.open(url) as ctx:
        assert ctx.list() == []
    if url.startswith("libxl:"):
        directory = Path(url.removeprefix("libxl://"))
        assert not [name for name in os.listdir(directory) if name.startswith("userdata-")]


# -- the library ----------------------------------------------------------------------------

HELPER = """
import sys, domdata
with domdata.open(sys.argv[1]) as ctx:
    domid = int(sys.argv[2])
    ctx.store(domid, "xl", ctx.retrieve(domid, "xl") + b"+helper")
"""


def test_a_python_tool_runs_a_helper_under_its_lock(url: str) -> None:
    with domdata.open(url) as ctx:
        dom = ctx.managed.create()
        ctx.store(dom.domid, "xl", b"tool")
        with ctx.handoff(dom.domid) as held:
            assert held.incarnation == dom.incarnation
            run = subprocess.run(
                [sys.executable, "-c", HELPER, url, str(dom.domid)], **held.popen_kwargs(), timeout=120
            )
            assert run.returncode == 0
            assert ctx.retrieve(dom.domid, "xl") == b"tool+helper"
            outsider = sh(environ(url), f"domdata --lock-timeout {SHORT} retrieve {dom.domid} xl")
            assert outsider.returncode == 6
            destroyer = subprocess.run(
                ["domdata", "domain", "destroy", str(dom.domid)],
                **held.popen_kwargs(environ(url)),
                timeout=120,
            )
            assert destroyer.returncode == 0
            with pytest.raises(domdata.DomainNotFound):
                ctx.retrieve(dom.domid, "xl")
        # The lock went with the block: the next caller finds the domain gone, at once.
        with pytest.raises(domdata.DomainNotFound):
            ctx.retrieve(dom.domid, "xl")


def test_handoff_is_not_taken_inside_lock(url: str) -> None:
    with domdata.open(url) as ctx:
        dom = ctx.managed.create()
        with ctx.lock(dom.domid), pytest.raises(RuntimeError), ctx.handoff(dom.domid):
            pass


def test_a_nested_lock_passes_the_same_handle_on(env: dict[str, str], url: str) -> None:
    dom = created(url)
    inner = f"printf nested | domdata --lock-timeout {SHORT} store {dom} xl"
    result = sh(env, f"domdata lock {dom} -- domdata lock {dom} -- sh -c '{inner}'")
    assert result.returncode == 0, result.stderr
    assert sh(env, f"domdata retrieve {dom} xl").stdout == "nested"


def test_postgresql_a_lost_keeper_fails_the_call_instead_of_running_it_unlocked(
    tmp_path: Path, kits: None
) -> None:
    url = STORE_KITS["postgresql"].url(tmp_path)
    with domdata.open(url) as ctx:
        dom = ctx.managed.create()
        with ctx.handoff(dom.domid) as held:
            ctx.store(dom.domid, "xl", b"kept")
            with socket.socket(fileno=os.dup(held.fd)) as probe:
                creds = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            keeper = struct.unpack("3i", creds)[0]
            os.kill(keeper, signal.SIGKILL)
            select.select([held.fd], [], [], 60)  # the keeper's end closes as it dies
            with pytest.raises(domdata.StoreUnavailable, match="keeper"):
                ctx.store(dom.domid, "xl", b"unlocked")
        assert ctx.retrieve(dom.domid, "xl") == b"kept"
