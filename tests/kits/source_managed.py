"""The managed source: domdata creates the domains itself."""

from __future__ import annotations

from pathlib import Path

import domdata
from domdata import Domain

from . import SourceKit


class ManagedKit(SourceKit):
    name = "managed"
    managed = True

    def spec(self, tmp_path: Path) -> str:
        return "managed"

    def create(self, ctx: domdata.Context) -> Domain:
        return ctx.managed.create()

    def end(self, ctx: domdata.Context, domain: Domain) -> None:
        raise NotImplementedError("Setup.end() uses the store kit's end_managed for managed domains")

    def reincarnate(self, ctx: domdata.Context, domain: Domain) -> Domain:
        # A managed domain's incarnation ends only through its store: Setup does it.
        return ctx.managed.create(domid=domain.domid)


KIT = ManagedKit()
