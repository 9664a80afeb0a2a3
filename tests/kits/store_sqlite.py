"""SQLite stores: a fresh database file per test."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from domdata import Incarnation
from domdata.stores.sqlite import path_of

from . import StoreKit


class SQLiteKit(StoreKit):
    name = "sqlite"

    def url(self, tmp_path: Path) -> str:
        return f"sqlite://{tmp_path / 'domdata.db'}"

    def end_managed(self, url: str, incarnation: Incarnation) -> None:
        with sqlite3.connect(path_of(url)) as db:
            db.execute("DELETE FROM domains WHERE domid = ? AND uuid = ?", incarnation)


KIT = SQLiteKit()
