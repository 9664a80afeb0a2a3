"""``domdata``: a thin click shell over the library. It parses, calls and prints.

Exit statuses (one per error class; 2 is click's usage error):

====  =====================================================================
0     success (an absent item, an idempotent unlink or empty store too)
1     any other domdata error
2     usage: unknown option, domid outside 0..2^32-1, malformed uuid...
3     DomainNotFound     4  InvalidUserid     5  DataTooLarge
6     LockTimeout        7  StoreUnavailable  8  CorruptItem
9     DomainExists       10 SourceUnavailable 11 NotManaged
12    ReapRefused
====  =====================================================================

``lock DOM -- COMMAND`` exits with COMMAND's status (128+N if signal N killed it).
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, TypeVar

import click

from . import _errors as errors
from . import _handoff
from ._context import DEFAULT_LOCK_TIMEOUT, Context
from ._context import open as open_context
from ._types import DEFAULT_MAX_ITEM_SIZE, MAX_DOMID, Domain, Item, canonical_uuid, uuid_shaped

F = TypeVar("F", bound=Callable[..., Any])

#: Exit status per error class, most specific first.
EXIT_STATUS: dict[type[errors.Error], int] = {
    errors.InvalidDomain: 2,
    errors.DomainNotFound: 3,
    errors.InvalidUserid: 4,
    errors.DataTooLarge: 5,
    errors.LockTimeout: 6,
    errors.StoreUnavailable: 7,
    errors.CorruptItem: 8,
    errors.DomainExists: 9,
    errors.SourceUnavailable: 10,
    errors.NotManaged: 11,
    errors.ReapRefused: 12,
}
#: Set by ``domdata lock`` for COMMAND: which inherited descriptor holds the lock.
LOCKED_ENV = _handoff.ENV
#: The signals ``domdata lock`` passes on to COMMAND.
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclasses.dataclass
class Settings:
    store: str | None
    domains: str
    host: str | None
    durable: bool
    lock_timeout: float
    max_item_size: int
    context: Context | None = None

    def open(self) -> Context:
        if self.context is None:
            self.context = open_context(
                self.store,
                self.domains,
                durable=self.durable,
                lock_timeout=self.lock_timeout,
                max_item_size=self.max_item_size,
                host=self.host,
            )
            click.get_current_context().call_on_close(self.context.close)
        return self.context


class _Shell(click.Group):
    """Turns a domdata error into one line on stderr and its exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except errors.Error as exc:
            click.echo(f"domdata: {exc}", err=True)
            status = next((code for cls, code in EXIT_STATUS.items() if isinstance(exc, cls)), 1)
            ctx.exit(status)


def _dom(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> str | None:
    """DOM: a domid, a uuid or a name. A bad domid or uuid is a usage error (status 2)."""
    if value is None:
        return None
    if value.isdigit():
        if int(value) > MAX_DOMID:
            raise click.BadParameter(f"domid {value} is outside 0..{MAX_DOMID}", ctx, param)
        return str(int(value))
    if uuid_shaped(value):
        try:
            return canonical_uuid(value)
        except errors.InvalidDomain as exc:
            raise click.BadParameter(exc.what, ctx, param) from None
    return value


def _domid(settings: Settings, dom: str) -> int:
    """DOM as a domid: itself if it is one (the call checks it lives), else looked up."""
    return int(dom) if dom.isdigit() else settings.open().domains.find(dom).domid


def _json(value: object) -> None:
    click.echo(json.dumps(value, indent=2))


def _as_dict(value: Domain | Item) -> dict[str, Any]:
    return dataclasses.asdict(value)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON with the library's field names.")(
        func
    )


@click.group(cls=_Shell, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    envvar="DOMDATA_STORE",
    metavar="URL",
    show_envvar=True,
    help="sqlite:///path, libxl:///dir or postgresql://... [default: SQLite in the user state dir]",
)
@click.option(
    "--domains",
    envvar="DOMDATA_DOMAINS",
    default="managed",
    show_default=True,
    show_envvar=True,
    metavar="SOURCE",
    help="Who says which domains exist: managed or libvirt:<uri>.",
)
@click.option(
    "--host",
    envvar="DOMDATA_HOST",
    show_envvar=True,
    help="This host's name in a cluster store [default: the machine's host name].",
)
@click.option(
    "--durable/--not-durable",
    default=True,
    show_default=True,
    help="--not-durable skips the fsync of each write: a crash may lose (never tear) it.",
)
@click.option(
    "--lock-timeout",
    type=float,
    default=DEFAULT_LOCK_TIMEOUT,
    show_default=True,
    envvar="DOMDATA_LOCK_TIMEOUT",
    show_envvar=True,
    metavar="SECONDS",
    help="How long a call waits for a held domain lock before failing.",
)
@click.option(
    "--max-item-size",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_ITEM_SIZE,
    show_default=True,
    envvar="DOMDATA_MAX_ITEM_SIZE",
    show_envvar=True,
    metavar="BYTES",
    help="The largest item accepted.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    store: str | None,
    domains: str,
    host: str | None,
    durable: bool,
    lock_timeout: float,
    max_item_size: int,
) -> None:
    """Keep private data alongside a domain (a VM), gone when the domain is."""
    ctx.obj = Settings(store, domains, host, durable, lock_timeout, max_item_size)


pass_settings = click.make_pass_decorator(Settings)


# -- domains ------------------------------------------------------------------


@cli.group()
def domain() -> None:
    """Create, destroy and list domains (create/destroy: managed source only)."""


@domain.command("create")
@click.argument("name", required=False)
@click.option("--domid", type=click.IntRange(0, MAX_DOMID), help="The domid [default: lowest free >= 1].")
@click.option("--uuid", "uuid_", metavar="UUID", help="The uuid [default: a random one].")
@json_option
@pass_settings
def domain_create(
    settings: Settings, name: str | None, domid: int | None, uuid_: str | None, as_json: bool
) -> None:
    """Create a managed domain and print its domid."""
    if uuid_ is not None:
        uuid_ = _dom(click.get_current_context(), None, uuid_)
    created = settings.open().managed.create(name, domid=domid, uuid=uuid_)
    if as_json:
        _json(_as_dict(created))
    else:
        click.echo(created.domid)


@domain.command("destroy")
@click.argument("dom", callback=_dom)
@pass_settings
def domain_destroy(settings: Settings, dom: str) -> None:
    """Destroy a managed domain and all its data, in one transaction."""
    ctx = settings.open()
    managed = ctx.managed
    ctx.destroy(managed.find(dom).domid)


@domain.command("list")
@json_option
@pass_settings
def domain_list(settings: Settings, as_json: bool) -> None:
    """List the live domains of the domain source."""
    domains = settings.open().domains.domains()
    if as_json:
        _json([_as_dict(d) for d in domains])
        return
    for d in domains:
        click.echo(f"{d.domid:>10}  {d.uuid}  {d.name or ''}".rstrip())


# -- items ----------------------------------------------------------------------


def _read_all(stream: BinaryIO, limit: int) -> bytes:
    # One byte more than the limit is enough to refuse: never read a huge input whole.
    return stream.read(limit + 1)


@cli.command("store")
@click.argument("dom", callback=_dom)
@click.argument("userid")
@click.argument("file", type=click.File("rb"), default="-")
@pass_settings
def store_cmd(settings: Settings, dom: str, userid: str, file: BinaryIO) -> None:
    """Store FILE (or stdin) as the item USERID of DOM. Empty input deletes it."""
    ctx = settings.open()
    ctx.store(_domid(settings, dom), userid, _read_all(file, ctx.max_item_size))


@cli.command()
@click.argument("dom", callback=_dom)
@click.argument("userid")
@click.option("-o", "--output", type=click.File("wb"), default="-", help="Write to FILE instead of stdout.")
@pass_settings
def retrieve(settings: Settings, dom: str, userid: str, output: BinaryIO) -> None:
    """Write the item's raw bytes to stdout. An absent item writes nothing (exit 0)."""
    data = settings.open().retrieve(_domid(settings, dom), userid)
    output.write(data)
    output.flush()


@cli.command()
@click.argument("dom", callback=_dom)
@click.argument("userid")
@pass_settings
def unlink(settings: Settings, dom: str, userid: str) -> None:
    """Delete the item. Deleting an absent item succeeds too."""
    settings.open().unlink(_domid(settings, dom), userid)


@cli.command("list")
@click.argument("dom", callback=_dom, required=False)
@click.option("--all-hosts", is_flag=True, help="Every host's items (cluster stores).")
@json_option
@pass_settings
def list_cmd(settings: Settings, dom: str | None, all_hosts: bool, as_json: bool) -> None:
    """List userids and sizes of DOM's items, or of every item in the store."""
    ctx = settings.open()
    items = ctx.list(None if dom is None else _domid(settings, dom), all_hosts=all_hosts)
    if as_json:
        _json([_as_dict(i) for i in items])
        return
    for i in items:
        host = f"{i.host}  " if all_hosts else ""
        click.echo(f"{host}{i.domid:>10}  {i.uuid}  {i.size:>10}  {i.userid}")


@cli.command()
@click.argument("dom", callback=_dom)
@click.argument("userid")
@pass_settings
def show(settings: Settings, dom: str, userid: str) -> None:
    """Print the item decoded for a person, through the userid registry."""
    from .registry import render

    data = settings.open().retrieve(_domid(settings, dom), userid)
    if data:
        click.echo(render(userid, data))


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("dom", callback=_dom)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_settings
def lock(settings: Settings, dom: str, command: Sequence[str]) -> None:
    """Run COMMAND while holding DOM's lock (write: domdata lock DOM -- COMMAND ...).

    domdata commands that COMMAND runs on DOM, in the same store, use the
    held lock: a shell read-modify-write is safe. The lock stays held until
    COMMAND (and what it left running) exits, even if this process is killed;
    TERM, INT and HUP are passed on to COMMAND. Exits with COMMAND's status.
    """
    ctx = settings.open()
    with ctx.handoff(_domid(settings, dom)) as held:
        status = _run_passing_signals(list(command), held.popen_kwargs())
    raise SystemExit(128 - status if status < 0 else status)


def _run_passing_signals(argv: list[str], kwargs: dict[str, Any]) -> int:
    """Run *argv*, passing TERM, INT and HUP on to it; its return code."""
    try:
        child = subprocess.Popen(argv, **kwargs)
    except OSError as exc:
        click.echo(f"domdata: cannot run {argv[0]}: {exc.strerror}", err=True)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    forward = lambda signum, _frame: child.send_signal(signum)  # noqa: E731
    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED}
    try:
        return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# -- collection -----------------------------------------------------------------


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@click.option("--force", is_flag=True, help="Reap even where the store says the source does not govern it.")
@json_option
@pass_settings
def reap(settings: Settings, dry_run: bool, force: bool, as_json: bool) -> None:
    """Remove the data of every incarnation that no longer lives, and debris."""
    report = settings.open().reap(dry_run=dry_run, force=force)
    if as_json:
        _json(
            {
                "dry_run": report.dry_run,
                "items": report.items,
                "incarnations": [i._asdict() for i in report.incarnations],
                "leftovers": report.leftovers,
                "busy": [i._asdict() for i in report.busy],
            }
        )
        return
    verb = "would remove" if dry_run else "removed"
    for incarnation in report.incarnations:
        click.echo(f"{verb} domain {incarnation}")
    for path in report.leftovers:
        click.echo(f"{verb} {path}")
    for incarnation in report.busy:
        click.echo(f"skipped domain {incarnation}: its lock stayed held")
    click.echo(f"{verb} {report.items} items of {len(report.incarnations)} dead incarnations")


@cli.command()
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Time between full reaps, besides collecting on each lifecycle event.",
)
@pass_settings
def watch(settings: Settings, interval: float) -> None:
    """The daemon: collect the data of each domain incarnation that ends."""
    import logging
    import threading

    from .watch import watch as run

    # One line per collected incarnation on stderr; journald adds the time.
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run(
        settings.store,
        settings.domains,
        interval=interval,
        stop=stop,
        durable=settings.durable,
        lock_timeout=settings.lock_timeout,
        max_item_size=settings.max_item_size,
        host=settings.host,
    )


@cli.command("registry")
@json_option
def registry_cmd(as_json: bool) -> None:
    """List the known userids: owner, data format and description."""
    from .registry import registry

    entries = registry().values()
    if as_json:
        _json([{f: getattr(e, f) for f in ("userid", "owner", "format", "description")} for e in entries])
        return
    for e in entries:
        click.echo(f"{e.userid}\n  owner: {e.owner}\n  format: {e.format}\n  {e.description}")


def main() -> None:
    try:
        cli()
    except BrokenPipeError:
        # A reader such as `head` went away: not an error of ours.
        sys.stderr.close()
        raise SystemExit(141) from None
