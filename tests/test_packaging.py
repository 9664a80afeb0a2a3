"""What a user of the built package sees: the licence in the wheel, the
metadata `pip show` prints, and a changelog entry for the version."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import domdata

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--disable-pip-version-check",
            "-w",
            out,
            ROOT,
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("domdata-*.whl")
    return built


def test_the_wheel_carries_the_licence(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (licence,) = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert archive.read(licence) == (ROOT / "LICENSE").read_bytes()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_the_metadata_says_what_a_user_looks_for(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(name).decode())
    assert metadata["Version"] == domdata.__version__
    assert metadata["License"] == "MIT"  # what pip show prints, old pips included
    assert "libxl" in metadata["Summary"]
    classifiers = metadata.get_all("Classifier") or []
    assert "Operating System :: POSIX :: Linux" in classifiers
    assert "Typing :: Typed" in classifiers
    assert metadata["Requires-Python"] == ">=3.11"


def test_the_changelog_has_the_version() -> None:
    assert f"## [{domdata.__version__}]" in (ROOT / "CHANGELOG.md").read_text()
