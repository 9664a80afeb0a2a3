"""The docs: the README's Python example runs, every command is documented,
docs/cli.md is what the commands say, and every relative link resolves."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import unquote, urlsplit

import click
import pytest

from domdata.cli import cli

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def _reference_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _commands() -> list[tuple[str, click.Command]]:
    """Every command, through the lazy groups too, as the reference sees them."""
    script = _reference_script()
    root = cli.make_context("domdata", [], resilient_parsing=True)
    return [(ctx.command_path, command) for ctx, command in script.commands(cli, root)]


def test_readme_python_example_runs(tmp_path: Path) -> None:
    example = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)[0]
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
    env.pop("DOMDATA_STORE", None)
    result = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[('xl', 28)]"
    assert (tmp_path / "domdata" / "domdata.db").exists()
    assert (tmp_path / "domdata").stat().st_mode & 0o777 == 0o700


def test_every_command_has_help_and_is_in_the_readme_and_the_reference() -> None:
    readme, reference = README.read_text(), (ROOT / "docs" / "cli.md").read_text()
    commands = _commands()
    assert len(commands) >= 14
    for path, command in commands:
        assert (command.help or "").strip(), f"{path} has no help text"
        assert path in readme, f"{path} is not in README.md"
        assert f"## `{path}`" in reference, f"{path} is not in docs/cli.md"


def test_the_command_reference_is_what_the_commands_say() -> None:
    generated = _reference_script().reference()
    assert (ROOT / "docs" / "cli.md").read_text() == generated, (
        "docs/cli.md is stale: .venv/bin/python scripts/cli_reference.py > docs/cli.md"
    )


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", markdown, flags=re.DOTALL), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def _links(page: Path) -> Iterator[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    yield from re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    relative = [link for link in _links(page) if not urlsplit(link).scheme]
    for link in relative:
        parts = urlsplit(link)
        target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
        assert target.exists(), f"{page.name}: {link} names no file"
        assert target.is_relative_to(ROOT), f"{page.name}: {link} leaves the repository"
        if parts.fragment and target.suffix == ".md":
            assert parts.fragment in _anchors(target.read_text()), f"{page.name}: {link}: no such heading"


def test_the_link_checker_sees_links_and_anchors() -> None:
    assert "cli.md" in list(_links(ROOT / "docs" / "contract.md"))
    assert "exit-statuses" in _anchors(README.read_text())
