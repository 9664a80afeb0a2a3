"""Option and argument values click alone would let through: non-finite
seconds, an empty --store, a DOM that looks like a negative domid."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest

from domdata.watch import watch
from tests._faults import domdata, environment

# -- non-finite floats ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "1e308", "nan", "-inf"])
def test_watch_refuses_a_non_finite_interval(store: str, value: str) -> None:
    result = domdata(store, "watch", "--interval", value)
    assert result.returncode == 2, result.stderr
    assert b"Traceback" not in result.stderr
    assert b"--interval" in result.stderr


@pytest.mark.parametrize("value", [math.inf, math.nan, 1e308, 0.0, -1.0])
def test_the_watch_function_refuses_an_interval_it_cannot_wait(store: str, value: float) -> None:
    stopped = threading.Event()
    stopped.set()  # were the interval let through, watch would return at once
    with pytest.raises(ValueError, match="interval must be positive seconds"):
        watch(store, None, interval=value, stop=stopped)


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "1e308"])
@pytest.mark.parametrize("command", [["retrieve", "1", "k"], ["info"]])
def test_lock_timeout_refuses_what_is_not_a_number_of_seconds(
    store: str, dom: str, value: str, command: list[str]
) -> None:
    result = domdata(store, "--lock-timeout", value, *command)
    assert result.returncode == 2, result.stderr
    assert b"Traceback" not in result.stderr
    env = environment(store, DOMDATA_LOCK_TIMEOUT=value)
    assert domdata(store, *command, env=env).returncode == 2


# -- an empty --store ----------------------------------------------------------------


@pytest.mark.parametrize("args", [["--store", ""], ["--store="]], ids=["separate", "equals"])
@pytest.mark.parametrize("command", [["info"], ["retrieve", "1", "k"], ["list", "1"]])
def test_an_empty_store_is_a_usage_error(tmp_path: Path, args: list[str], command: list[str]) -> None:
    env = environment(None, XDG_STATE_HOME=str(tmp_path / "state"), HOME=str(tmp_path / "home"))
    result = domdata(None, *args, *command, env=env)
    assert result.returncode == 2, result.stderr
    assert b"--store" in result.stderr
    assert b"empty" in result.stderr
    assert not (tmp_path / "state").exists()
    assert not (tmp_path / "home").exists()


def test_an_empty_domdata_store_variable_is_unset(tmp_path: Path) -> None:
    env = environment(None, DOMDATA_STORE="", XDG_STATE_HOME=str(tmp_path / "state"))
    result = domdata(None, "info", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["location"].startswith(str(tmp_path / "state"))


# -- a DOM that looks like a negative domid ---------------------------------------------


@pytest.mark.parametrize("value", ["-1", "-0", "-4294967296"])
@pytest.mark.parametrize("command", [["retrieve"], ["store"], ["unlink"], ["show"]])
def test_a_negative_domid_is_invalid(store: str, value: str, command: list[str]) -> None:
    result = domdata(store, *command, "--", value, "xl", stdin=b"")
    assert result.returncode == 2, result.stderr
    assert b"no such domain" not in result.stderr
    assert value.encode() in result.stderr
