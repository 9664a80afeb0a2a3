"""A reboot of the host ends every incarnation on it (DESIGN section 1).

Each boot is simulated by a private mount namespace with other files over
/proc/sys/kernel/random/boot_id and /proc/stat (tests/kits/boots.py); domdata
runs in a subprocess inside it. The domain runs in a private libvirtd, which
keeps it, with its id and uuid, across the simulated reboot: what a host
crash followed by an autostart looks like to domdata.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid as _uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import domdata
from domdata.domains import parse_source
from domdata.stores.sqlite import MIGRATIONS
from tests.kits import STORE_KITS
from tests.kits.boots import Boot, Boots, host_started
from tests.kits.source_libvirt import URI, Libvirtd, domain_xml, need_libvirt
from tests.libvirt.test_source import TEST_DOMAIN

# Runs a list of calls on one domid in a fresh process; prints their results as JSON.
DRIVER = """
import json, sys
import domdata

url, spec, domid, calls = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
results = []
with domdata.open(url, spec) as ctx:
    for name, *args in calls:
        if name == "create":
            results.append(ctx.managed.create(domid=domid).uuid)
        elif name == "incarnation":
            results.append(ctx.domains.incarnation(domid))
        elif name == "store":
            results.append(ctx.store(domid, args[0], args[1].encode()))
        elif name == "retrieve":
            results.append(ctx.retrieve(domid, args[0]).decode())
        elif name == "unlink":
            results.append(ctx.unlink(domid, args[0]))
        elif name == "list":
            results.append([item.userid for item in ctx.list(domid)])
        elif name == "list_all":
            results.append([[item.domid, item.userid] for item in ctx.list()])
        elif name == "reap":
            report = ctx.reap(dry_run=args[0])
            results.append({
                "incarnations": report.incarnations,
                "earlier_boot": report.earlier_boot,
                "items": report.items,
            })
print(json.dumps(results))
"""


@pytest.fixture
def boots(tmp_path: Path) -> Boots:
    return Boots(tmp_path / "boots")


@pytest.fixture
def domain(libvirtd: Libvirtd) -> Iterator[tuple[int, str]]:
    """A running domain of the private libvirtd: (id, uuid). This process keeps
    a connection open, so the daemon keeps its test hypervisor between the
    subprocesses of every boot."""
    libvirt = need_libvirt()
    conn = libvirt.open(libvirtd.uri)
    try:
        dom = conn.createXML(domain_xml("survivor"), 0)
        yield dom.ID(), dom.UUIDString()
    finally:
        conn.close()


def calls(boots: Boots, boot: Boot, url: str, spec: str, domid: int, *todo: list[Any]) -> list[Any]:
    """Run *todo* through the library in *boot*; their results."""
    done = boots.run(boot, sys.executable, "-c", DRIVER, url, spec, str(domid), json.dumps(todo))
    assert done.returncode == 0, done.stderr
    results: list[Any] = json.loads(done.stdout)
    return results


def a_boot_after_now(boots: Boots) -> Boot:
    """A boot that starts after every file written so far: the clock is let
    pass its start (a file's mtime comes from a coarse clock, a little behind)."""
    boot = boots.new(int(time.time()) + 1)
    while time.time() < boot.started + 0.05:
        time.sleep(0.05)
    return boot


@pytest.mark.usefixtures("kits")
@pytest.mark.parametrize("store_name", sorted(STORE_KITS))
def test_a_reboot_ends_the_incarnation_that_ran_before_it(
    store_name: str, tmp_path: Path, libvirtd: Libvirtd, domain: tuple[int, str], boots: Boots
) -> None:
    url = STORE_KITS[store_name].url(tmp_path)
    spec = f"libvirt:{libvirtd.uri}"
    domid, uuid = domain
    before = boots.new(host_started())
    assert calls(
        boots, before, url, spec, domid,
        ["incarnation"], ["store", "a", "1"], ["store", "b", "2"], ["retrieve", "a"], ["list"],
    ) == [[domid, uuid], None, None, "1", ["a", "b"]]

    after = a_boot_after_now(boots)
    # The same (domid, uuid) runs again, and sees nothing of the boot before.
    assert calls(
        boots, after, url, spec, domid,
        ["incarnation"], ["retrieve", "a"], ["retrieve", "b"], ["list"], ["unlink", "b"],
        ["store", "a", "new"], ["retrieve", "a"], ["list"], ["list_all"], ["reap", True],
    ) == [
        [domid, uuid], "", "", [], False,
        None, "new", ["a"], [[domid, "a"], [domid, "b"]],
        {"incarnations": [], "earlier_boot": [[domid, uuid]], "items": 1},
    ]

    reaped = boots.domdata(after, "--store", url, "--domains", spec, "reap")
    assert reaped.returncode == 0, reaped.stderr
    assert reaped.stdout.splitlines() == [
        f"removed the items domain {domid} ({uuid}) had before this host's boot",
        "removed 1 item of 0 dead incarnations and of 1 of an earlier boot",
    ]
    assert calls(
        boots, after, url, spec, domid, ["list_all"], ["retrieve", "a"], ["retrieve", "b"], ["reap", False],
    ) == [[[domid, "a"]], "new", "", {"incarnations": [], "earlier_boot": [], "items": 0}]


@pytest.mark.usefixtures("kits")
@pytest.mark.parametrize("store_name", sorted(STORE_KITS))
def test_reaping_at_boot_needs_no_libvirt_and_leaves_nothing_for_the_autostarted_domain(
    store_name: str, tmp_path: Path, libvirtd: Libvirtd, boots: Boots
) -> None:
    libvirt = need_libvirt()
    url = STORE_KITS[store_name].url(tmp_path)
    spec = f"libvirt:{libvirtd.uri}"
    uuid = str(_uuid.uuid4())
    conn = libvirt.open(libvirtd.uri)
    domid = conn.createXML(domain_xml("autostarted", uuid), 0).ID()
    before = boots.new(host_started())
    assert calls(boots, before, url, spec, domid, ["store", "a", "1"], ["store", "b", "2"]) == [None, None]
    conn.close()
    libvirtd.kill()  # the host goes down with its domains

    after = a_boot_after_now(boots)
    reap = ("--store", url, "--domains", spec, "reap", "--earlier-boots")
    dry = boots.domdata(after, *reap, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert (report["earlier_boot"], report["items"]) == ([{"domid": domid, "uuid": uuid}], 2)
    # On libxl the lock file goes too, as debris: nothing of that boot is left.
    debris = [f"removed {p}" for p in sorted(tmp_path.glob(f"xen/userdata-l.{domid}.{uuid}.*"))]
    assert (store_name == "libxl") == bool(debris)
    reaped = boots.domdata(after, *reap)
    assert reaped.returncode == 0, reaped.stderr
    assert reaped.stdout.splitlines() == [
        f"removed the items domain {domid} ({uuid}) had before this host's boot",
        *debris,
        "removed 2 items of 0 dead incarnations and of 1 of an earlier boot",
    ]
    assert list(tmp_path.glob(f"xen/userdata-*.{domid}.{uuid}.*")) == []

    libvirtd.start()  # then libvirt autostarts the domain: the same id and uuid
    conn = libvirt.open(libvirtd.uri)
    try:
        assert conn.createXML(domain_xml("autostarted", uuid), 0).ID() == domid
        assert calls(boots, after, url, spec, domid, ["incarnation"], ["list"], ["list_all"]) == [
            [domid, uuid], [], [],
        ]
    finally:
        conn.close()


@pytest.mark.usefixtures("kits")
@pytest.mark.parametrize("store_name", sorted(STORE_KITS))
def test_a_reboot_leaves_managed_domains_alone(store_name: str, tmp_path: Path, boots: Boots) -> None:
    url = STORE_KITS[store_name].url(tmp_path)
    before = boots.new(host_started())
    uuid = calls(boots, before, url, "managed", 7, ["create"], ["store", "a", "1"])[0]

    after = a_boot_after_now(boots)
    assert calls(
        boots, after, url, "managed", 7,
        ["incarnation"], ["retrieve", "a"], ["list"], ["reap", False], ["retrieve", "a"],
    ) == [[7, uuid], "1", ["a"], {"incarnations": [], "earlier_boot": [], "items": 0}, "1"]
    at_boot = boots.domdata(after, "--store", url, "reap", "--earlier-boots")
    assert at_boot.returncode == 0, at_boot.stderr
    assert at_boot.stdout == "removed 0 items of 0 dead incarnations\n"
    assert calls(boots, after, url, "managed", 7, ["retrieve", "a"]) == ["1"]


def test_the_watch_daemon_collects_an_earlier_boots_items_at_start(
    tmp_path: Path, libvirtd: Libvirtd, domain: tuple[int, str], boots: Boots
) -> None:
    path = tmp_path / "domdata.db"
    url, spec = f"sqlite://{path}", f"libvirt:{libvirtd.uri}"
    domid, uuid = domain
    calls(boots, boots.new(host_started()), url, spec, domid, ["store", "a", "1"], ["store", "b", "2"])
    after = a_boot_after_now(boots)
    calls(boots, after, url, spec, domid, ["store", "a", "new"])

    def userids() -> list[str]:
        with sqlite3.connect(path) as db:
            found = [row[0] for row in db.execute("SELECT userid FROM userdata ORDER BY userid")]
        db.close()
        return found

    watch = (sys.executable, "-m", "domdata", "--store", url, "--domains", spec, "watch")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    daemon = subprocess.Popen(boots.command(after, *watch), stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while userids() != ["a"]:
            assert time.monotonic() < deadline, f"still {userids()} after 60 s"
            time.sleep(0.05)
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0, stderr
    assert f"collected the items incarnation {domid} ({uuid}) had before this host's boot (reap)" in stderr
    assert calls(boots, after, url, spec, domid, ["retrieve", "a"]) == ["new"]


def test_a_boot_that_cannot_be_read_is_one_line_only_where_the_rule_is_needed(
    tmp_path: Path, libvirtd: Libvirtd, boots: Boots
) -> None:
    url = f"sqlite://{tmp_path / 'domdata.db'}"
    spec = f"libvirt:{libvirtd.uri}"
    broken = {
        "boot_id": boots.new(host_started(), boot_id="not a boot id\n"),
        "btime": boots.new(host_started(), stat="cpu  1 2 3 4\n"),
    }
    for what, boot in broken.items():
        done = boots.domdata(boot, "--store", url, "--domains", spec, "list", "1")
        assert done.returncode == 10, done.stderr
        assert done.stderr.count("\n") == 1
        assert "Traceback" not in done.stderr
        assert what in done.stderr
        assert "die with the host" in done.stderr
        managed = boots.domdata(boot, "--store", url, "domain", "list")
        assert managed.returncode == 0, managed.stderr


@pytest.mark.parametrize(
    ("uri", "local"),
    [
        ("qemu:///system", True),
        ("qemu:///session", True),
        ("xen:///", True),
        ("xen:///system", True),
        ("lxc:///", True),
        ("test:///default", True),
        ("test+unix:///default?socket=/run/x/libvirt-sock", True),
        ("qemu+unix:///system", True),
        ("qemu://localhost/system", True),
        ("qemu+ssh://host/system", False),
        ("qemu+ssh://root@xen-07.example.org:2222/system", False),
        ("xen+tls://192.0.2.1/system", False),
        ("qemu+ssh://[::1/system", False),
    ],
)
def test_only_a_libvirt_uri_naming_no_remote_host_dies_with_the_host(uri: str, local: bool) -> None:
    assert parse_source(f"libvirt:{uri}").dies_with_host is local


def test_managed_domains_do_not_die_with_the_host(tmp_path: Path) -> None:
    assert parse_source("managed").dies_with_host is False
    with domdata.open(f"sqlite://{tmp_path / 'domdata.db'}") as ctx:
        assert ctx.domains.dies_with_host is False


def test_items_written_before_boots_were_recorded_have_no_boot(tmp_path: Path) -> None:
    """A store of domdata's first schema: its items are kept, not taken for
    an earlier boot's (the upgrade must lose nothing), until written again."""
    need_libvirt()
    path = tmp_path / "domdata.db"
    with sqlite3.connect(path) as db:
        for statement in MIGRATIONS[0]:
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        db.execute("INSERT INTO userdata VALUES (?, ?, 'xl', x'6f6c64')", TEST_DOMAIN)
    db.close()
    with domdata.open(f"sqlite://{path}", f"libvirt:{URI}") as ctx:
        assert ctx.domains.dies_with_host
        assert ctx.retrieve(1, "xl") == b"old"
        assert ctx.reap().items == 0
        ctx.store(1, "xl", b"new")
    with sqlite3.connect(path) as db:
        boot = db.execute("SELECT boot FROM userdata").fetchone()[0]
    db.close()
    assert boot == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
