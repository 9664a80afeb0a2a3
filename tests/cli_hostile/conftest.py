"""The fixtures of the command line's hostile-condition tests: a SQLite store
in a directory of its own, and a managed domain in it holding one item."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_hostile._shared import domain_with_item, store_in


@pytest.fixture
def store(tmp_path: Path) -> str:
    return store_in(tmp_path)


@pytest.fixture
def dom(store: str) -> str:
    return domain_with_item(store)
