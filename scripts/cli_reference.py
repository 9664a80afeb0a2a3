"""Print docs/cli.md, the command reference, from the click commands themselves.

    .venv/bin/python scripts/cli_reference.py > docs/cli.md

tests/test_docs.py fails when docs/cli.md differs from what this prints, so
the reference cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Iterator

import click

from domdata.cli import cli

#: Help is laid out for this many columns, whatever the terminal.
WIDTH = 88

INTRO = """\
# `domdata`: command reference

Generated from the commands themselves by `scripts/cli_reference.py`; a test
keeps it in step. The contract behind each command is in
[contract.md](contract.md); exit statuses are in the
[README](../README.md#exit-statuses).

`DOM` is a domid, a uuid or a domain name. The store and the domain source come
from `--store URL` / `DOMDATA_STORE` and `--domains SOURCE` / `DOMDATA_DOMAINS`
(default: SQLite in the user's state directory, managed domains). Global
options go before the command: `domdata --store libxl:///var/lib/xen list`.
"""


def commands(group: click.Group, parent: click.Context) -> Iterator[tuple[click.Context, click.Command]]:
    """Every command under *group*, depth first, each with its own context."""
    for name in group.list_commands(parent):
        command = group.get_command(parent, name)
        if command is None:
            continue
        ctx = command.make_context(name, [], parent=parent, resilient_parsing=True, terminal_width=WIDTH)
        yield ctx, command
        if isinstance(command, click.Group):
            yield from commands(command, ctx)


def reference() -> str:
    root = cli.make_context("domdata", [], resilient_parsing=True, terminal_width=WIDTH)
    sections = [INTRO, f"## `domdata`\n\n```text\n{cli.get_help(root)}\n```\n"]
    for ctx, command in commands(cli, root):
        sections.append(f"## `{ctx.command_path}`\n\n```text\n{command.get_help(ctx)}\n```\n")
    return "\n".join(sections)


if __name__ == "__main__":
    print(reference(), end="")
