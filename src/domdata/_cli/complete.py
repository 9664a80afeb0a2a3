"""Shell completion of DOM and USERID (click's bash, zsh and fish completion
asks these while the user presses TAB: they must be quick and never fail)."""

from __future__ import annotations

import click
from click.shell_completion import CompletionItem

import domdata

#: A held domain lock must not hang a TAB press.
LOCK_TIMEOUT = 1.0


def _open(ctx: click.Context) -> domdata.Context:
    """The store and source the command line being completed names."""
    given = ctx.find_root().params
    return domdata.open(
        given.get("store"),
        given.get("domains") or "managed",
        host=given.get("host"),
        lock_timeout=LOCK_TIMEOUT,
    )


def domains(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    """The domids and names of the source's live domains."""
    try:
        with _open(ctx) as dd:
            live = dd.domains.domains()
    except domdata.Error:
        return []
    candidates = [CompletionItem(str(d.domid), help=d.name) for d in live]
    candidates += [CompletionItem(d.name, help=f"domid {d.domid}") for d in live if d.name]
    return [c for c in candidates if c.value.startswith(incomplete)]


def userids(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    """The userids of the DOM given earlier on the line."""
    dom = ctx.params.get("dom")
    if not dom:
        return []
    try:
        with _open(ctx) as dd:
            items = dd.list(dd.domains.find(dom).domid)
    except domdata.Error:
        return []
    return [
        CompletionItem(i.userid, help=f"{i.size} bytes") for i in items if i.userid.startswith(incomplete)
    ]
