"""domdata.open validates its options before opening anything: a value out of
range is InvalidOption (a ValueError), a value of the wrong type InvalidOption
(a TypeError) too, with the bounds the command line uses."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

import domdata
from domdata._types import MAX_ITEM_SIZE_CAP, MAX_LOCK_TIMEOUT


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path}/x.db"


@pytest.mark.parametrize(
    "value", [math.nan, -math.nan, math.inf, -math.inf, -1, -0.001, MAX_LOCK_TIMEOUT * 2]
)
def test_lock_timeout_out_of_range_is_refused(url: str, tmp_path: Path, value: float) -> None:
    with pytest.raises(
        domdata.InvalidOption, match=r"lock_timeout is a number of seconds in 0\.\."
    ) as caught:
        domdata.open(url, lock_timeout=value)
    assert isinstance(caught.value, ValueError)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("value", ["5", None, True, b"1", [1]])
def test_lock_timeout_of_another_type_is_refused(url: str, value: object) -> None:
    with pytest.raises(domdata.InvalidOption, match="lock_timeout") as caught:
        domdata.open(url, lock_timeout=value)  # type: ignore[arg-type]
    assert isinstance(caught.value, TypeError)


@pytest.mark.parametrize("value", [0, -1, MAX_ITEM_SIZE_CAP + 1, 10**20])
def test_max_item_size_out_of_range_is_refused(url: str, tmp_path: Path, value: int) -> None:
    with pytest.raises(domdata.InvalidOption, match=f"max_item_size is an int in 1..{MAX_ITEM_SIZE_CAP}"):
        domdata.open(url, max_item_size=value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("value", [1.5, 16.0, "16", None, True])
def test_max_item_size_of_another_type_is_refused(url: str, value: object) -> None:
    with pytest.raises(domdata.InvalidOption, match="max_item_size") as caught:
        domdata.open(url, max_item_size=value)  # type: ignore[arg-type]
    assert isinstance(caught.value, TypeError)


@pytest.mark.parametrize(
    ("timeout", "size"), [(0, 1), (0.5, 1), (MAX_LOCK_TIMEOUT, MAX_ITEM_SIZE_CAP), (60, 100)]
)
def test_the_bounds_themselves_are_accepted(url: str, timeout: float, size: int) -> None:
    with domdata.open(url, lock_timeout=timeout, max_item_size=size) as ctx:
        assert (ctx.lock_timeout, ctx.max_item_size) == (timeout, size)


def test_the_command_line_uses_the_same_bounds() -> None:
    from domdata._cli import common

    assert common.MAX_ITEM_SIZE_CAP == MAX_ITEM_SIZE_CAP


@pytest.mark.parametrize("store", [b"sqlite:////tmp/x.db", 5, ["sqlite:x.db"]])
def test_a_store_url_that_is_not_a_str_is_invalid_url(store: object) -> None:
    with pytest.raises(domdata.InvalidURL, match="a store URL is a str"):
        domdata.open(store)  # type: ignore[arg-type]


@pytest.mark.parametrize("domains", [5, b"managed", ["managed"]])
def test_a_source_that_is_not_a_str_is_refused(url: str, tmp_path: Path, domains: object) -> None:
    with pytest.raises(domdata.InvalidOption, match="domains is a str") as caught:
        domdata.open(url, domains)  # type: ignore[arg-type]
    assert isinstance(caught.value, TypeError)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("retention", [5, "1d", (10, 60.0)])
def test_changes_retention_that_is_not_a_retention_is_refused(
    url: str, tmp_path: Path, retention: object
) -> None:
    with pytest.raises(domdata.InvalidOption, match=r"changes_retention is a domdata\.Retention"):
        domdata.open(url, changes_retention=retention)  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("host", [5, b"h"])
def test_a_host_that_is_not_a_str_is_refused(url: str, host: object) -> None:
    with pytest.raises(domdata.InvalidOption, match="host is a str"):
        domdata.open(url, host=host)  # type: ignore[arg-type]


@pytest.mark.parametrize("dom", [None, 5, b"web1", 1.5])
def test_find_of_a_non_str_is_invalid_domain(url: str, dom: object) -> None:
    with domdata.open(url) as ctx:
        ctx.managed.create("web1")
        with pytest.raises(domdata.InvalidDomain, match="a str"):
            ctx.find(dom)  # type: ignore[arg-type]


def test_an_empty_store_url_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """None is the default store; "" (a variable left unset) is a mistake, not the default."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("DOMDATA_STORE", raising=False)
    with pytest.raises(domdata.InvalidURL, match="empty"):
        domdata.open("")
    assert not (tmp_path / "state").exists()
