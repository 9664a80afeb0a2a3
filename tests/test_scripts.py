"""scripts/_env.sh: a second run does not reinstall (the venv's python is a
shim that records pip's runs instead of making them and runs everything else)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

SHIM = f"""#!/bin/sh
if [ "$1 $2" = "-m pip" ]; then echo "$*" >> "$(dirname "$0")/pip-runs"; exit 0; fi
exec {sys.executable} "$@"
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "_env.sh", tmp_path / "scripts")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(SHIM)
    python.chmod(0o755)
    return tmp_path


def make_venv(tree: Path, extras: str) -> list[str]:
    """Run make_venv; the pip commands it ran (all of them so far)."""
    subprocess.run(
        ["bash", "-c", f'source scripts/_env.sh && make_venv "{extras}"'], cwd=tree, check=True, timeout=60
    )
    runs = tree / ".venv" / "bin" / "pip-runs"
    return runs.read_text().splitlines() if runs.exists() else []


def test_pip_runs_only_when_something_changed(tree: Path) -> None:
    assert make_venv(tree, "") == ["-m pip install -q --disable-pip-version-check -e ."]
    assert len(make_venv(tree, "")) == 1
    assert make_venv(tree, "test,libvirt")[-1].endswith("-e .[libvirt,test]")
    assert len(make_venv(tree, "")) == 2
    assert len(make_venv(tree, "test")) == 2
    with (tree / "pyproject.toml").open("a") as pyproject:
        pyproject.write("\n# a new dependency, say\n")
    assert make_venv(tree, "")[-1].endswith("-e .")
    assert len(make_venv(tree, "")) == 3
