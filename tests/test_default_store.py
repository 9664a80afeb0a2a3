"""The default store's place: platformdirs' user state directory, found
without importing platformdirs in the usual cases (start-up, issue 12)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import platformdirs
import pytest

from domdata.stores import default_url


def _platformdirs_url() -> str:
    """What default_url() returned when it asked platformdirs every time."""
    return f"sqlite://{quote(str(Path(platformdirs.user_state_path('domdata')) / 'domdata.db'))}"


@pytest.mark.parametrize(
    ("xdg", "home"),
    [
        (None, "{tmp}/home"),  # the usual case: ~/.local/state
        ("", "{tmp}/home"),
        (None, "{tmp}/home/"),  # a trailing slash on HOME
        (None, "{tmp}//home"),  # not in normal form: platformdirs answers
        ("{tmp}/state", "{tmp}/home"),
        ("{tmp}/state/", "{tmp}/home"),
        ("{tmp}/./state", "{tmp}/home"),
        ("{tmp}/a/../state", "{tmp}/home"),
        ("{tmp}/odd #?%41 é", "{tmp}/home"),  # escaped in the URL
        ("   ", "{tmp}/home"),  # blank
    ],
)
def test_the_default_store_is_where_platformdirs_puts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, xdg: str | None, home: str
) -> None:
    monkeypatch.setenv("HOME", home.format(tmp=tmp_path))
    if xdg is None:
        monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_STATE_HOME", xdg.format(tmp=tmp_path))
    assert default_url() == _platformdirs_url()
