"""Store URLs that cannot be read one way only are refused as InvalidURL,
before anything is opened or created, for every scheme."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import domdata


def _urls(tmp_path: Path, scheme: str) -> str:
    if scheme == "postgresql":
        return "postgresql://localhost/domdata"
    if scheme == "sqlite":
        return f"sqlite://{tmp_path}/x.db"
    return f"libxl://{tmp_path}"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://[::1/x.db",
        "sqlite://[/x.db",
        "sqlite://]/x.db",
        "libxl://[/tmp",
        "postgresql://[::1",
        "postgresql://user@[::1/db",
        "postgres://]/db",
    ],
)
def test_an_unmatched_bracket_is_invalid_url(url: str) -> None:
    with pytest.raises(domdata.InvalidURL, match=r"'\[' or '\]'") as caught:
        domdata.open(url)
    assert caught.value.store == url


@pytest.mark.parametrize("scheme", ["sqlite", "libxl", "postgresql"])
@pytest.mark.parametrize(
    ("where", "char"),
    [
        ("before", " "),
        ("after", " "),
        ("before", "\t"),
        ("after", "\n"),
        ("after", "\u00a0"),
        ("inside", "\t"),
        ("inside", "\n"),
        ("inside", "\x00"),
        ("inside", "\x7f"),
        ("inside", "\x1b"),
    ],
)
def test_surrounding_space_or_a_control_character_is_invalid_url(
    tmp_path: Path, scheme: str, where: str, char: str
) -> None:
    url = _urls(tmp_path, scheme)
    if where == "before":
        url = char + url
    elif where == "after":
        url += char
    else:
        url = url.replace("//", "//" + "a" + char, 1) if scheme == "postgresql" else url + char + "y"
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(domdata.InvalidURL, match=r"space|control character"):
        domdata.open(url)
    assert sorted(os.listdir(tmp_path)) == before


def test_a_space_inside_a_path_is_kept(tmp_path: Path) -> None:
    with domdata.open(f"sqlite://{tmp_path}/my store.db") as ctx:
        ctx.managed.create("web1")
    assert (tmp_path / "my store.db").is_file()
