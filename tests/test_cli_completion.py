"""Shell completion, run by bash itself: the script domdata prints, sourced,
and its completion function called as bash calls it on TAB."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent

#: Source the completion script, then complete the words given: COMPREPLY, one per line.
COMPLETE = """
source <(_DOMDATA_COMPLETE=bash_source domdata)
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMPREPLY=()
_domdata_completion domdata
printf '%s\\n' "${{COMPREPLY[@]}}"
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DOMDATA_STORE": f"sqlite://{tmp_path / 'c.db'}",
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    for args, stdin in [
        (["domain", "create", "web1", "--domid", "3"], None),
        (["domain", "create", "db1", "--domid", "12"], None),
        (["store", "web1", "xl", "-"], b"x"),
        (["store", "web1", "libvirt-xml", "-"], b"<domain/>"),
        (["store", "db1", "other", "-"], b"y"),
    ]:
        subprocess.run(["domdata", *args], env=env, input=stdin, check=True, capture_output=True)
    return env


def complete(env: dict[str, str], *words: str) -> list[str]:
    script = COMPLETE.format(words=" ".join(shlex.quote(w) for w in ("domdata", *words)))
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    return [line for line in result.stdout.splitlines() if line]


def test_commands(env: dict[str, str]) -> None:
    assert complete(env, "re") == ["reap", "registry", "retrieve"]
    assert {"export", "import", "store", "domain"} <= set(complete(env, ""))
    assert complete(env, "domain", "") == ["create", "destroy", "list"]


def test_options(env: dict[str, str]) -> None:
    assert complete(env, "unlink", "--") == ["--quiet", "--json", "--help"]
    assert "--store" in complete(env, "--")


def test_dom_is_a_live_domains_domid_or_name(env: dict[str, str]) -> None:
    assert complete(env, "retrieve", "") == ["3", "12", "web1", "db1"]
    assert complete(env, "list", "w") == ["web1"]
    assert complete(env, "domain", "destroy", "1") == ["12"]


def test_userid_is_one_the_domain_has(env: dict[str, str]) -> None:
    assert sorted(complete(env, "retrieve", "web1", "")) == ["libvirt-xml", "xl"]
    assert complete(env, "show", "12", "") == ["other"]
    assert complete(env, "unlink", "web1", "l") == ["libvirt-xml"]


def test_completion_follows_the_store_on_the_line(env: dict[str, str], tmp_path: Path) -> None:
    other = f"sqlite://{tmp_path / 'other.db'}"
    subprocess.run(["domdata", "--store", other, "domain", "create", "lone"], env=env, check=True)
    assert complete(env, "--store", other, "retrieve", "") == ["1", "lone"]


def test_completion_of_what_cannot_be_found_is_empty_and_quiet(env: dict[str, str], tmp_path: Path) -> None:
    assert complete(env, "retrieve", "nosuch", "") == []
    assert complete(env, "--store", "nosuch://x", "retrieve", "") == []
    assert complete(env, "--domains", "libvirt:nowhere:///", "retrieve", "") == []


@pytest.mark.parametrize(
    ("shell", "says"), [("zsh", "compdef _domdata_completion domdata"), ("fish", "complete")]
)
def test_zsh_and_fish_scripts(env: dict[str, str], shell: str, says: str) -> None:
    script = subprocess.run(
        ["domdata"], env={**env, "_DOMDATA_COMPLETE": f"{shell}_source"}, capture_output=True, text=True
    )
    assert script.returncode == 0
    assert says in script.stdout
