"""The command line: exit statuses, binary safety, JSON, ``lock --``, start-up."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import domdata
from domdata.cli import EXIT_STATUS, cli

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'cli.db'}"


@pytest.fixture
def env(store: str) -> dict[str, str]:
    """The environment of a domdata process on the test's store."""
    return {**os.environ, "DOMDATA_STORE": store, "PATH": f"{BIN}:{os.environ['PATH']}"}


def run(store: str, *args: str, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, ["--store", store, *args], input=stdin, catch_exceptions=False)


def shell(env: dict[str, str], *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["domdata", *args], input=stdin, capture_output=True, env=env, timeout=60)


@pytest.fixture
def domid(store: str) -> int:
    return int(run(store, "domain", "create", "web1").output)


# -- documentation ----------------------------------------------------------------


def test_every_exit_status_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for error, status in EXIT_STATUS.items():
        assert f"| {status} | {error.__name__}" in readme


# -- exit statuses, one per error class -------------------------------------------


def test_domain_not_found_is_3(store: str, domid: int) -> None:
    result = run(store, "retrieve", "77", "xl")
    assert result.exit_code == 3
    assert "domain 77" in result.output
    assert store in result.output


def test_invalid_userid_is_4(store: str, domid: int) -> None:
    result = run(store, "store", str(domid), "a/b", stdin=b"x")
    assert result.exit_code == 4
    assert "'/'" in result.output
    assert run(store, "list", "--json").output.strip() == "[]"


def test_data_too_large_is_5(store: str, domid: int) -> None:
    run(store, "store", str(domid), "xl", stdin=b"old")
    result = run(store, "--max-item-size", "10", "store", str(domid), "xl", stdin=b"x" * 11)
    assert result.exit_code == 5
    assert "10 bytes" in result.output
    assert run(store, "retrieve", str(domid), "xl").stdout_bytes == b"old"


def test_lock_timeout_is_6(store: str, domid: int) -> None:
    with domdata.open(store) as ctx, ctx.lock(domid):
        result = run(store, "--lock-timeout", "0.2", "store", str(domid), "xl", stdin=b"x")
    assert result.exit_code == 6
    assert "still held" in result.output


def test_store_unavailable_is_7(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    result = run(f"sqlite://{tmp_path / 'file' / 'domdata.db'}", "list")
    assert result.exit_code == 7


def test_corrupt_item_is_8(store: str, domid: int) -> None:
    run(store, "store", str(domid), "xl", stdin=b"x")
    with sqlite3.connect(store.removeprefix("sqlite://")) as db:
        db.execute("UPDATE userdata SET data = x''")
    result = run(store, "retrieve", str(domid), "xl")
    assert result.exit_code == 8
    assert "empty" in result.output


def test_domain_exists_is_9(store: str, domid: int) -> None:
    assert run(store, "domain", "create", "web1").exit_code == 9
    assert run(store, "domain", "create", "--domid", str(domid)).exit_code == 9


def test_source_unavailable_is_10(store: str) -> None:
    result = run(store, "--domains", "nonsense", "list")
    assert result.exit_code == 10
    assert "nonsense" in result.output


def test_not_managed_is_11(store: str) -> None:
    pytest.importorskip("libvirt", reason="needs libvirt-python (installed by scripts/test.sh)")
    result = run(store, "--domains", "libvirt:test:///default", "domain", "create", "x")
    assert result.exit_code == 11


@pytest.mark.parametrize(
    "args",
    [
        ["retrieve", "4294967296", "xl"],
        ["retrieve", "1234567-1234-1234-1234-123456789abc", "xl"],
        ["retrieve", "g2345678-1234-1234-1234-123456789abc", "xl"],
        ["domain", "create", "--domid", "-1"],
        ["domain", "create", "--uuid", "not-a-uuid-at-all-0000000000000000"],
        ["no-such-command"],
    ],
)
def test_bad_domid_or_uuid_is_a_usage_error(store: str, args: list[str]) -> None:
    assert run(store, *args).exit_code == 2


def test_every_error_class_has_its_own_status() -> None:
    statuses = list(EXIT_STATUS.values())
    assert len(set(statuses)) == len(statuses)
    assert 0 not in statuses
    assert 1 not in statuses


# -- items ----------------------------------------------------------------------


def test_raw_bytes_pass_through_stdin_and_stdout_unchanged(env: dict[str, str]) -> None:
    dom = shell(env, "domain", "create").stdout.decode().strip()
    data = bytes(range(256)) * 64 + b"\r\n\0\n"
    assert shell(env, "store", dom, "blob", stdin=data).returncode == 0
    out = shell(env, "retrieve", dom, "blob")
    assert out.returncode == 0
    assert out.stdout == data


def test_store_from_a_file_and_retrieve_to_a_file(store: str, domid: int, tmp_path: Path) -> None:
    source, target = tmp_path / "in.cfg", tmp_path / "out.cfg"
    source.write_bytes(b"memory = 512\n")
    assert run(store, "store", "web1", "xl", str(source)).exit_code == 0
    assert run(store, "retrieve", "web1", "xl", "-o", str(target)).exit_code == 0
    assert target.read_bytes() == b"memory = 512\n"


def test_absent_item_prints_nothing_and_succeeds(store: str, domid: int) -> None:
    result = run(store, "retrieve", str(domid), "xl")
    assert result.exit_code == 0
    assert result.stdout_bytes == b""


def test_empty_input_deletes_and_deleting_nothing_succeeds(store: str, domid: int) -> None:
    run(store, "store", str(domid), "xl", stdin=b"x")
    assert run(store, "store", str(domid), "xl", stdin=b"").exit_code == 0
    assert run(store, "retrieve", str(domid), "xl").stdout_bytes == b""
    assert run(store, "store", str(domid), "xl", stdin=b"").exit_code == 0
    assert run(store, "unlink", str(domid), "xl").exit_code == 0


def test_dom_may_be_a_domid_a_uuid_or_a_name(store: str, domid: int) -> None:
    (created,) = json.loads(run(store, "domain", "list", "--json").output)
    run(store, "store", "web1", "xl", stdin=b"by name")
    assert run(store, "retrieve", created["uuid"].upper(), "xl").stdout_bytes == b"by name"
    assert run(store, "retrieve", str(domid), "xl").stdout_bytes == b"by name"


def test_json_uses_the_library_field_names(store: str, domid: int) -> None:
    run(store, "store", str(domid), "xl", stdin=b"12345")
    created = json.loads(run(store, "domain", "create", "db1", "--domid", "9", "--json").output)
    assert set(created) == {"domid", "uuid", "name"}
    assert created["domid"] == 9
    domains = json.loads(run(store, "domain", "list", "--json").output)
    assert [d["name"] for d in domains] == ["web1", "db1"]
    items = json.loads(run(store, "list", "--json").output)
    assert items == [{"domid": domid, "uuid": domains[0]["uuid"], "userid": "xl", "size": 5, "host": None}]
    assert json.loads(run(store, "list", "web1", "--json").output) == items


def test_show_decodes_through_the_registry(store: str, domid: int) -> None:
    run(store, "store", str(domid), "libxl-json", stdin=b'{"c_info": {"name": "web1"}}\0')
    shown = run(store, "show", str(domid), "libxl-json").output
    assert json.loads(shown) == {"c_info": {"name": "web1"}}
    assert '\n  "c_info"' in shown


def test_registry_lists_the_libxl_userids(store: str) -> None:
    entries = json.loads(run(store, "registry", "--json").output)
    assert {"xl", "libvirt-xml", "libxl-json", "domain-userdata-lock"} <= {e["userid"] for e in entries}


def test_domain_destroy_takes_the_data_along(store: str, domid: int) -> None:
    run(store, "store", str(domid), "xl", stdin=b"x")
    assert run(store, "domain", "destroy", "web1").exit_code == 0
    assert run(store, "list", "--json").output.strip() == "[]"
    assert run(store, "domain", "destroy", "web1").exit_code == 3


def test_reap_dry_run_reports_and_removes_nothing(store: str, domid: int) -> None:
    run(store, "store", str(domid), "xl", stdin=b"x")
    with sqlite3.connect(store.removeprefix("sqlite://")) as db:
        db.execute("DELETE FROM domains")
    dry = json.loads(run(store, "reap", "--dry-run", "--json").output)
    assert dry["dry_run"] is True
    assert dry["items"] == 1
    assert len(dry["incarnations"]) == 1
    assert len(json.loads(run(store, "list", "--json").output)) == 1
    done = run(store, "reap")
    assert "removed 1 item of 1 dead incarnation" in done.output
    assert run(store, "list", "--json").output.strip() == "[]"


def test_environment_chooses_store_and_source(env: dict[str, str]) -> None:
    assert shell(env, "domain", "create", "envdom").returncode == 0
    listed = json.loads(shell(env, "domain", "list", "--json").stdout)
    assert [d["name"] for d in listed] == ["envdom"]
    bad = shell({**env, "DOMDATA_DOMAINS": "bogus"}, "list")
    assert bad.returncode == 10


# -- lock DOM -- COMMAND ------------------------------------------------------------


def test_lock_runs_the_command_with_the_lock_held(env: dict[str, str], store: str) -> None:
    dom = shell(env, "domain", "create").stdout.decode().strip()
    probe = f"domdata --lock-timeout 5 store {dom} xl </dev/null; domdata retrieve {dom} xl"
    # Inside: domdata uses the held lock. Another store's context must wait.
    script = (
        f"printf inside | domdata store {dom} xl && "
        f'env -u DOMDATA_LOCKED domdata --lock-timeout 0.2 retrieve {dom} xl; echo "outsider=$?"'
    )
    result = shell(env, "lock", dom, "--", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == "outsider=6"
    assert shell(env, "retrieve", dom, "xl").stdout == b"inside"
    assert shell(env, "lock", dom, "--", "sh", "-c", probe).returncode == 0


def test_lock_exits_with_the_commands_status(env: dict[str, str]) -> None:
    dom = shell(env, "domain", "create").stdout.decode().strip()
    assert shell(env, "lock", dom, "--", "sh", "-c", "exit 7").returncode == 7
    assert shell(env, "lock", dom, "--", "sh", "-c", "kill -TERM $$").returncode == 128 + signal.SIGTERM
    assert shell(env, "lock", dom, "--", "no-such-program-here").returncode == 127


def test_shell_read_modify_write_under_lock_loses_no_update(env: dict[str, str]) -> None:
    dom = shell(env, "domain", "create").stdout.decode().strip()
    step = f'v=$(domdata retrieve {dom} n); printf "%s" $(( ${{v:-0}} + 1 )) | domdata store {dom} n'
    loop = f"for i in $(seq 15); do domdata lock {dom} -- sh -c '{step}' || exit 1; done"
    workers = [subprocess.Popen(["sh", "-c", loop], env=env) for _ in range(4)]
    assert [w.wait(timeout=300) for w in workers] == [0, 0, 0, 0]
    assert shell(env, "retrieve", dom, "n").stdout == b"60"


# -- start-up -------------------------------------------------------------------------


def test_the_cli_imports_no_optional_package() -> None:
    optional = {"libvirt", "psycopg", "psycopg_pool", "sqlite3", "platformdirs"}
    code = f"import sys, domdata.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in {optional}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_reap_refused_is_12_and_force_overrides(tmp_path: Path) -> None:
    # A libxl directory holding a libxl-created domain (a libxl-json item):
    # only Xen may say which of its domains are dead.
    store = f"libxl://{tmp_path}"
    domid = run(store, "domain", "create").output.strip()
    run(store, "store", domid, "libxl-json", stdin=b"{}\0")
    refused = run(store, "reap")
    assert refused.exit_code == 12
    assert "xen:///system" in refused.output
    assert run(store, "reap", "--dry-run").exit_code == 0
    assert run(store, "reap", "--force").exit_code == 0
    assert run(store, "retrieve", domid, "libxl-json").stdout_bytes == b"{}\0"
