"""libxl stores: a fresh directory per test, laid out as libxl's /var/lib/xen."""

from __future__ import annotations

import os
from pathlib import Path

from domdata import Incarnation
from domdata.stores.libxl import dir_of, record_name

from . import StoreKit


class LibxlKit(StoreKit):
    name = "libxl"

    def url(self, tmp_path: Path) -> str:
        # A libxl store is a directory that exists (domdata never creates one).
        (tmp_path / "xen").mkdir(exist_ok=True)
        return f"libxl://{tmp_path / 'xen'}"

    def end_managed(self, url: str, incarnation: Incarnation) -> None:
        # Only the record goes: the items stay, as a crashed toolstack leaves them.
        os.unlink(os.path.join(dir_of(url), record_name(incarnation)))


KIT = LibxlKit()
