"""The userid registry: libxl's entries, decoders, and plugins by entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from domdata.registry import BUILTIN, hexdump, registry, render


def test_the_four_libxl_userids_are_registered() -> None:
    known = registry()
    assert {"xl", "libvirt-xml", "libxl-json", "domain-userdata-lock"} <= set(known)
    for entry in BUILTIN:
        assert entry.owner
        assert entry.format
        assert entry.description


def test_libxl_json_is_shown_indented_without_its_nul() -> None:
    shown = render("libxl-json", b'{"c_info":{"name":"web1","type":"pv"}}\0')
    assert json.loads(shown) == {"c_info": {"name": "web1", "type": "pv"}}
    assert shown.splitlines()[1] == '  "c_info": {'


def test_libvirt_xml_is_shown_indented() -> None:
    shown = render("libvirt-xml", b"<domain type='xen'><name>web1</name><memory>512</memory></domain>")
    assert shown.splitlines() == [
        '<domain type="xen">',
        "  <name>web1</name>",
        "  <memory>512</memory>",
        "</domain>",
    ]


def test_xl_config_is_shown_as_text() -> None:
    assert render("xl", b'name = "web1"\nmemory = 512\n') == 'name = "web1"\nmemory = 512\n'


def test_data_not_in_the_registered_format_is_said_so_and_dumped() -> None:
    shown = render("libvirt-xml", b"<domain>")
    assert shown.startswith("# not valid libvirt domain XML")
    assert "3c 64 6f 6d 61 69 6e 3e" in shown


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"plain text\n", "plain text\n"), (b"\x00\x01\xff", hexdump(b"\x00\x01\xff"))],
)
def test_unknown_userids_are_shown_as_text_or_hex(data: bytes, expected: str) -> None:
    assert render("org.example.unknown", data) == expected


def test_hexdump_has_offsets_hex_and_printable_characters() -> None:
    lines = hexdump(b"ABCDEFGHIJKLMNOP\x00q").splitlines()
    assert lines[0] == "00000000  41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f 50  ABCDEFGHIJKLMNOP"
    assert lines[1].startswith("00000010  00 71")
    assert lines[1].endswith(".q")


def test_packages_add_userids_through_entry_points(tmp_path: Path) -> None:
    (tmp_path / "org_example_backup.py").write_text(
        "from domdata.registry import Userid\n"
        "USERIDS = [Userid('org.example.backup', 'example backup', 'JSON',"
        " 'When the domain was last backed up.', lambda data: 'last backup: ' + data.decode())]\n"
    )
    dist = tmp_path / "org_example_backup-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: org-example-backup\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[domdata.userids]\nbackup = org_example_backup:USERIDS\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    listed = subprocess.run(
        [sys.executable, "-m", "domdata", "registry", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    entry = next(e for e in json.loads(listed.stdout) if e["userid"] == "org.example.backup")
    assert entry == {
        "userid": "org.example.backup",
        "owner": "example backup",
        "format": "JSON",
        "description": "When the domain was last backed up.",
    }
    code = "from domdata.registry import render; print(render('org.example.backup', b'2026-11-25'))"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert shown.stdout.strip() == "last backup: 2026-11-25"
