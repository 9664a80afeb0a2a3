"""``domdata``: a thin click shell over the library. It parses, calls and prints.

Exit statuses (one per error class; 2 is click's usage error):

====  =====================================================================
0     success (an absent item, an idempotent unlink or empty store too)
1     any other domdata error
2     usage: unknown option, domid outside 0..2^32-1, malformed uuid or store URL...
3     DomainNotFound     4  InvalidUserid     5  DataTooLarge
6     LockTimeout        7  StoreUnavailable  8  CorruptItem
9     DomainExists       10 SourceUnavailable 11 NotManaged
12    ReapRefused        13 InvalidData       15 SourceMismatch
16    NotClustered       17 ChangesLost
14    the output could not be written (any command: a full disk, an I/O
      error, a closed stdout; ``-o FILE`` that cannot be written, left as it was)
126   ``lock``: COMMAND cannot be run      127  ``lock``: COMMAND not found
130   interrupted (Ctrl-C, SIGINT)         141  the reader of stdout went away
====  =====================================================================

``lock DOM -- COMMAND`` exits with COMMAND's status (128+N if signal N killed it).
"""

from __future__ import annotations

import dataclasses
import importlib
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, TypeVar

import click

import domdata

from . import DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_ITEM_SIZE, MAX_DOMID, Context, Domain, Item, ReapReport
from . import open as open_context
from ._cli.common import (
    BROKEN_PIPE,
    CANNOT_RUN,
    INTERRUPTED,
    MAX_ITEM_SIZE_CAP,
    NOT_FOUND,
    BadValue,
    Interrupted,
    check_host,
    check_interval,
    check_lock_timeout,
    check_no_nul,
    check_store,
    domid_of,
    error_line,
    exit_status,
    interrupt,
    items_table,
    output_failed,
    parse_dom,
    plug_closed_descriptors,
    quiet_exit,
    store_input,
    table,
    unlinked,
    write_lines,
    write_output,
)
from ._cli.common import EXIT_STATUS as EXIT_STATUS
from ._cli.common import shown as _shown
from ._cli.streams import OutputFailed
from ._cli.streams import guard as guard_streams

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

F = TypeVar("F", bound=Callable[..., Any])

#: The signals ``domdata lock`` passes on to COMMAND.
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclasses.dataclass
class Settings:
    store: str | None
    domains: str | None
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
    """Turns a domdata error into one line on stderr and its exit status.

    The commands in ``lazy`` live in modules of their own, imported only when
    one of them runs (or help lists them): start-up pays for what runs.
    """

    lazy: ClassVar[dict[str, str]] = {
        "export": "domdata._cli.transfer:export",
        "import": "domdata._cli.transfer:import_",
        "info": "domdata._cli.info:info",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, _, name = self.lazy[cmd_name].partition(":")
            command: click.Command = getattr(importlib.import_module(module), name)
            return command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except domdata.Error as exc:
            click.echo(f"domdata: {exc}", err=True)
            ctx.exit(exit_status(exc))


def _dom(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> str | None:
    """DOM: a domid, a uuid or a name. A bad domid or uuid is a usage error (status 2),
    as are an empty DOM, one with a control character, and digits other than 0-9."""
    if value is None:
        return None
    try:
        return parse_dom(value)
    except BadValue as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _complete_dom(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from ._cli.complete import domains

    return domains(ctx, incomplete)


def _complete_userid(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from ._cli.complete import userids

    return userids(ctx, incomplete)


def dom_argument(*, required: bool = True) -> Callable[[F], F]:
    """DOM: parsed by ``_dom``, completed with the live domains' domids and names."""
    return click.argument("dom", callback=_dom, required=required, shell_complete=_complete_dom)


#: USERID, completed with the userids DOM has.
userid_argument = click.argument("userid", shell_complete=_complete_userid)


def _domid(settings: Settings, dom: str) -> int:
    """DOM as a domid: itself if it is one (the call checks it lives), else looked up."""
    return domid_of(settings.open(), dom)


def _checked(check: Callable[[Any], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """An option callback: None passes, a BadValue from *check* is a usage error."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            return None if value is None else check(value)
        except BadValue as exc:
            raise click.BadParameter(str(exc), ctx, param) from None

    return callback


def _json(value: object) -> None:
    import json

    click.echo(json.dumps(value, indent=2))


def _as_dict(value: Domain | Item) -> dict[str, Any]:
    return value._asdict()


def _count(n: int, noun: str) -> str:
    """``1 item``, ``2 items``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON with the library's field names.")(
        func
    )


@click.group(cls=_Shell, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="domdata", prog_name="domdata", message="%(prog)s %(version)s")
@click.option(
    "--store",
    envvar="DOMDATA_STORE",
    metavar="URL",
    show_envvar=True,
    callback=_checked(check_store),
    help="sqlite:///path, libxl:///dir or postgresql://... [default: SQLite in the user state dir]",
)
@click.option(
    "--domains",
    envvar="DOMDATA_DOMAINS",
    show_envvar=True,
    metavar="SOURCE",
    callback=_checked(check_no_nul),
    help="Who says which domains exist: managed, libvirt:<uri> or xen (libxenlight)"
    " [default: the source the store records, else managed].",
)
@click.option(
    "--host",
    envvar="DOMDATA_HOST",
    show_envvar=True,
    callback=_checked(check_host),
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
    callback=_checked(check_lock_timeout),
    metavar="SECONDS",
    help="How long a call waits for a held domain lock before failing.",
)
@click.option(
    "--max-item-size",
    type=click.IntRange(1, MAX_ITEM_SIZE_CAP),
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
    domains: str | None,
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
@dom_argument()
@pass_settings
def domain_destroy(settings: Settings, dom: str) -> None:
    """Destroy a managed domain and all its data, in one transaction."""
    ctx = settings.open()
    _ = ctx.managed  # NotManaged unless domdata manages the domains
    ctx.destroy(ctx.find(dom).domid)


@domain.command("list")
@json_option
@pass_settings
def domain_list(settings: Settings, as_json: bool) -> None:
    """List the live domains of the domain source."""
    domains = settings.open().domains.domains()
    if as_json:
        _json([_as_dict(d) for d in domains])
        return
    rows = ((d.domid, d.uuid, d.name or "") for d in domains)
    for line in table(("DOMID", "UUID", "NAME"), rows, right=("DOMID",)):
        click.echo(line)


# -- items ----------------------------------------------------------------------


@cli.command("store")
@dom_argument()
@userid_argument
@click.argument("file", type=click.File("rb"), default="-")
@pass_settings
def store_cmd(settings: Settings, dom: str, userid: str, file: BinaryIO) -> None:
    """Store FILE (or stdin) as the item USERID of DOM. Empty input deletes it."""
    ctx = settings.open()
    store_input(ctx, _domid(settings, dom), userid, file)


@cli.command()
@dom_argument()
@userid_argument
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    help="Write to FILE instead of stdout (opened only once the item is read).",
)
@pass_settings
def retrieve(settings: Settings, dom: str, userid: str, output: str) -> None:
    """Write the item's raw bytes to stdout. An absent item writes nothing (exit 0)."""
    data = settings.open().retrieve(_domid(settings, dom), userid)
    write_output(output, data)


@cli.command()
@dom_argument()
@userid_argument
@click.option("-q", "--quiet", is_flag=True, help="Print nothing (the exit status is 0 either way).")
@click.option("--json", "as_json", is_flag=True, help='Print {"removed": true|false}.')
@pass_settings
def unlink(settings: Settings, dom: str, userid: str, quiet: bool, as_json: bool) -> None:
    """Delete the item and say whether there was one. An absent item succeeds too."""
    removed = settings.open().unlink(_domid(settings, dom), userid)
    if as_json:
        _json({"removed": removed})
    elif not quiet:
        write_lines([unlinked(dom, userid, removed)])


@cli.command("list")
@dom_argument(required=False)
@click.option("--all-hosts", is_flag=True, help="Every host's items (cluster stores).")
@click.option(
    "--with-rev", is_flag=True, help='Also the revision the list reflects (JSON: {"rev": N, "items": [...]}).'
)
@json_option
@pass_settings
def list_cmd(settings: Settings, dom: str | None, all_hosts: bool, with_rev: bool, as_json: bool) -> None:
    """List userids and sizes of DOM's items, or of every item in the store."""
    ctx = settings.open()
    items = ctx.list(None if dom is None else _domid(settings, dom), all_hosts=all_hosts)
    rev = items.rev if with_rev else None
    if as_json:
        listed = [_as_dict(i) for i in items]
        _json(listed if rev is None else {"rev": rev, "items": listed})
        return
    write_lines([*([] if rev is None else [f"rev {rev}"]), *items_table(items, all_hosts=all_hosts)])


@cli.command()
@dom_argument(required=False)
@click.option(
    "--since", type=click.IntRange(min=0), metavar="REV", help="Only the changes after revision REV."
)
@click.option("-f", "--follow", is_flag=True, help="Then wait, printing each new change as it commits.")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per line, with the library's field names."
)
@pass_settings
def changes(settings: Settings, dom: str | None, since: int | None, follow: bool, as_json: bool) -> None:
    """Print the changes to items (of DOM, or all), in revision order.

    Every retained change unless --since; exit status 17 (ChangesLost) when the
    changes after REV are no longer kept: list --with-rev again and go on from there.
    """
    import json

    ctx = settings.open()
    feed = ctx.changes(None if dom is None else _domid(settings, dom), since=since, follow=follow)
    if not as_json:
        click.echo(f"{'REV':>10}  {'OP':<8} {'DOMID':>10}  {'UUID':<36}  {'SIZE':>10}  USERID")
    for change in feed:
        if as_json:
            line = json.dumps(change._asdict())
        else:
            size = "-" if change.size is None else change.size
            line = f"{change.rev:>10}  {change.op:<8} {change.domid:>10}  {change.uuid}  {size:>10}"
            line += f"  {change.userid}"
            if change.host is not None:
                line += f"  @{change.host}"
        click.echo(line)
        sys.stdout.flush()


@cli.command()
@dom_argument()
@userid_argument
@pass_settings
def show(settings: Settings, dom: str, userid: str) -> None:
    """Print the item decoded for a person, through the userid registry.

    An absent item is said on stderr (exit 0, as for retrieve).
    """
    from .registry import render

    data = settings.open().retrieve(_domid(settings, dom), userid)
    if data:
        click.echo(render(userid, data))
    else:
        click.echo(f"domdata: {dom} has no {userid}", err=True)


@cli.command(context_settings={"ignore_unknown_options": True})
@dom_argument()
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
        kwargs = held.popen_kwargs()
        status = _run_passing_signals(list(command), kwargs, ctx.store_url, held.incarnation.domid)
    raise SystemExit(128 - status if status < 0 else status)


def _run_passing_signals(argv: list[str], kwargs: dict[str, Any], store: str, domid: int) -> int:
    """Run *argv*, passing TERM, INT and HUP on to it; its return code."""
    import subprocess

    try:
        child = subprocess.Popen(argv, **kwargs)
    except OSError as exc:
        what = f"cannot run {_shown(argv[0])}: {exc.strerror}"
        click.echo(f"domdata: store {store}, domain {domid}: {what}", err=True)
        return NOT_FOUND if isinstance(exc, FileNotFoundError) else CANNOT_RUN
    forward = lambda signum, _frame: child.send_signal(signum)  # noqa: E731
    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED}
    try:
        return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@cli.command()
@dom_argument()
@click.option(
    "--to-domid", type=click.IntRange(0, MAX_DOMID), required=True, metavar="N", help="Its domid there."
)
@click.option("--to-host", metavar="HOST", help="The host it goes to [default: this host].")
@json_option
@pass_settings
def migrate(settings: Settings, dom: str, to_domid: int, to_host: str | None, as_json: bool) -> None:
    """Move DOM's data (and managed record) to domid N on HOST, as the domain
    migrates, in one transaction (cluster stores: PostgreSQL)."""
    moved = settings.open().migrate(_domid(settings, dom), to_domid=to_domid, to_host=to_host)
    if as_json:
        _json({"items": moved, "domid": to_domid, "host": to_host})
    else:
        where = f" on {to_host}" if to_host else ""
        click.echo(f"moved {_count(moved, 'item')} of {dom} to domid {to_domid}{where}")


# -- collection -----------------------------------------------------------------


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@click.option("--force", is_flag=True, help="Reap even where the store says the source does not govern it.")
@click.option(
    "--earlier-boots",
    is_flag=True,
    help="Only the items of earlier boots of this host, without asking the domain source "
    "(at boot, before it starts domains: contrib/domdata-reap-at-boot.service).",
)
@json_option
@pass_settings
def reap(settings: Settings, dry_run: bool, force: bool, earlier_boots: bool, as_json: bool) -> None:
    """Remove the data of every incarnation that no longer lives, and debris.

    A file that cannot be removed is reported (exit status 7) after everything
    else was collected.
    """
    from . import reap_earlier_boots

    if earlier_boots:
        report = reap_earlier_boots(
            settings.store,
            settings.domains,
            dry_run=dry_run,
            durable=settings.durable,
            lock_timeout=settings.lock_timeout,
            host=settings.host,
        )
        store = settings.store or "the store"
    else:
        ctx = settings.open()
        report = ctx.reap(dry_run=dry_run, force=force)
        store = ctx.store_url
    _print_reap(report, as_json)
    if report.failed:
        raise domdata.LeftBehind(report.items, report.failed, store=store)


def _print_reap(report: ReapReport, as_json: bool) -> None:
    if as_json:
        _json(
            {
                "dry_run": report.dry_run,
                "items": report.items,
                "incarnations": [i._asdict() for i in report.incarnations],
                "earlier_boot": [i._asdict() for i in report.earlier_boot],
                "leftovers": report.leftovers,
                "busy": [i._asdict() for i in report.busy],
                "failed": [{"incarnation": str(i), "path": p, "reason": r} for i, p, r in report.failed],
            }
        )
        return
    verb = "would remove" if report.dry_run else "removed"
    for incarnation in report.incarnations:
        click.echo(f"{verb} domain {incarnation}")
    for incarnation in report.earlier_boot:
        click.echo(f"{verb} the items domain {incarnation} had before this host's boot")
    for path in report.leftovers:
        click.echo(f"{verb} {path}")
    for incarnation in report.busy:
        click.echo(f"skipped domain {incarnation}: its lock stayed held")
    dead = _count(len(report.incarnations), "dead incarnation")
    rebooted = f" and of {len(report.earlier_boot)} of an earlier boot" if report.earlier_boot else ""
    click.echo(f"{verb} {_count(report.items, 'item')} of {dead}{rebooted}")


@cli.command()
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    callback=_checked(check_interval),
    metavar="SECONDS",
    help="Time between full reaps, besides collecting on each lifecycle event.",
)
@pass_settings
def watch(settings: Settings, interval: float) -> None:
    """The daemon: collect the data of each domain incarnation that ends."""
    import logging
    import signal
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


@cli.command("bind")
@click.argument("source", metavar="SOURCE")
@pass_settings
def bind_cmd(settings: Settings, source: str) -> None:
    """Record SOURCE as the domain source that governs the store, and say what it was.

    A store records its source the first time it is used; naming another one
    is refused (SourceMismatch) until this command changes it.
    """
    from . import bind

    before, now = bind(settings.store, source, host=settings.host)
    click.echo(f"domain source: was {before or 'none'}, now {now}")


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
    plug_closed_descriptors()
    guard_streams()
    signal.signal(signal.SIGINT, interrupt)
    try:
        try:
            cli()
        except SystemExit as exc:
            if not exc.code:
                sys.stdout.flush()  # success is only success once the output is out
            raise
    except OutputFailed as exc:
        output_failed("stdout", exc.error)  # a reader such as `head` that went away: 141, quietly
    except BrokenPipeError:
        quiet_exit(BROKEN_PIPE)
    except Interrupted:
        error_line("domdata: interrupted")
        raise SystemExit(INTERRUPTED) from None
