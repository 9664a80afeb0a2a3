"""``domdata info``: what a person checks first when debugging: which store,
which source, how much is in it, and which host and boot this is."""

from __future__ import annotations

import socket
import time
from typing import Any

import click

from domdata.cli import Settings, _count, _json, json_option, pass_settings


def boot() -> dict[str, Any]:
    """This boot of the host: its id and when it started (what ends every incarnation on it)."""
    found: dict[str, Any] = {"id": None, "started": None}
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot_id:
            found["id"] = boot_id.read().strip()
        with open("/proc/stat") as stat:
            btime = next(int(line.split()[1]) for line in stat if line.startswith("btime "))
        found["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(btime))
    except (OSError, StopIteration, ValueError):
        pass  # not Linux: no boot to show
    return found


@click.command("info")
@json_option
@pass_settings
def info(settings: Settings, as_json: bool) -> None:
    """Show the store (URL, where, schema), the source (and the one the store
    records), counts, host and boot."""
    from importlib.metadata import version

    ctx = settings.open()
    described = ctx.info()
    items = ctx.list()
    report: dict[str, Any] = {
        "version": version("domdata"),
        "store": described.store,
        "location": described.location,
        "schema_version": described.schema_version,
        "source": described.source,
        "bound_source": described.bound_source,
        "domains": len(ctx.domains.domains()),
        "items": len(items),
        "incarnations": len({(i.domid, i.uuid) for i in items}),
        "host": described.host or settings.host or socket.gethostname(),
        "boot": boot(),
    }
    if as_json:
        _json(report)
        return
    started = report["boot"]["started"]
    lines = {
        "domdata": report["version"],
        "store": report["store"],
        "location": report["location"],
        "schema": "-" if described.schema_version is None else described.schema_version,
        "source": report["source"],
        "bound source": report["bound_source"] or "- (none recorded)",
        "domains": f"{report['domains']} live",
        "items": f"{_count(report['items'], 'item')} of {_count(report['incarnations'], 'incarnation')}",
        "host": report["host"],
        "boot": f"{report['boot']['id'] or '-'}, since {started or '-'}",
    }
    width = max(map(len, lines))
    for key, value in lines.items():
        click.echo(f"{key.ljust(width)}  {value}")
