"""``domdata export`` and ``domdata import``: a domain's items (or a whole
store's) as one tar archive, to move them between stores that share nothing."""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import click

import domdata
from domdata.cli import Settings, _count, _domid, dom_argument, pass_settings

from .common import OutputFile, output_failed

if TYPE_CHECKING:
    from . import archive

T = TypeVar("T")


@contextmanager
def progress(items: Sequence[T], label: str) -> Iterator[Iterable[T]]:
    """A progress bar on stderr for long work, when stdout is a terminal; else silence."""
    if len(items) < 2 or not sys.stdout.isatty():
        yield items
        return
    with click.progressbar(items, label=label, file=sys.stderr) as bar:
        yield bar


@click.command("export")
@dom_argument(required=False)
@click.option("--all", "everything", is_flag=True, help="Every live domain's items: a backup of the store.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    metavar="FILE",
    help="Write to FILE instead of stdout.",
)
@pass_settings
def export(settings: Settings, dom: str | None, everything: bool, output: str) -> None:
    """Write DOM's items (or, with --all, every live domain's) as one tar archive.

    One member per item and a manifest.json (format version, source store,
    domains, sizes): `tar -tvf` lists it, `tar -xf` unpacks it. Each domain is
    read under its lock, so its items are one consistent snapshot. Items of
    incarnations that ended (what reap collects) are left out.
    """
    if (dom is None) == (not everything):
        raise click.UsageError("name one DOM, or --all")
    if output == "-" and sys.stdout is not None and sys.stdout.isatty():
        raise click.UsageError("the archive is binary: write it with -o FILE or into a pipe")
    ctx = settings.open()
    if everything:
        domains = list(ctx.domains.domains())
    else:
        assert dom is not None
        domains = [ctx.find(dom)]
    try:
        if output == "-":
            if sys.stdout is None:
                raise OSError(errno.EBADF, "stdout is closed")
            exported = _export(ctx, domains, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            with OutputFile(output) as file:
                exported = _export(ctx, domains, file)
    except OSError as exc:
        output_failed("stdout" if output == "-" else output, exc)
    click.echo(f"exported {_count(exported, 'item')} of {_count(len(domains), 'domain')}", err=True)


def _export(ctx: domdata.Context, domains: list[domdata.Domain], output: BinaryIO) -> int:
    """Write the archive of *domains* to *output*; how many items it holds."""
    from . import archive  # tarfile: only for the commands that need it

    exported = 0
    with archive.writing(output, ctx.store_url) as writer, progress(domains, "exporting") as bar:
        for domain in bar:
            exported += _export_domain(ctx, domain, writer)
    return exported


def _export_domain(ctx: domdata.Context, domain: domdata.Domain, writer: archive.Writer) -> int:
    try:
        with ctx.lock(domain.domid) as incarnation:
            if incarnation.uuid != domain.uuid:
                return 0  # it died and its domid was reused meanwhile: another domain now
            writer.domain(domain)
            items = ctx.list(domain.domid)
            for item in items:
                writer.item(domain.domid, domain.uuid, item.userid, ctx.retrieve(domain.domid, item.userid))
            return len(items)
    except domdata.DomainNotFound:
        return 0  # it ended between the listing and its lock: nothing to back up


@click.command("import")
@dom_argument()
@click.argument("file", type=click.File("rb"), default="-")
@click.option(
    "--from",
    "from_",
    metavar="DOMID|UUID|NAME",
    help="The domain to take from an archive of several (export --all).",
)
@pass_settings
def import_(settings: Settings, dom: str, file: BinaryIO, from_: str | None) -> None:
    """Store the items of an archive (FILE or stdin) into the live domain DOM.

    All or nothing: every userid and size is checked against this store
    before anything is written, all items are stored under DOM's lock, and if
    one store fails the items written before it are put back as they were.
    Items of DOM that the archive does not hold stay.
    """
    if file.isatty():
        raise click.UsageError("name the archive FILE, or pipe it in")
    from . import archive

    ctx = settings.open()
    try:
        manifest, entries = archive.read(file, ctx.max_item_size)
    except domdata.Error as exc:
        raise type(exc)(f"{exc.what}; nothing imported", store=ctx.store_url, domain=dom) from None
    chosen = _choose(manifest, entries, from_)
    domid = _domid(settings, dom)
    with ctx.lock(domid):
        for entry in chosen:
            _check(ctx, domid, entry)
        before = {entry.userid: ctx.retrieve(domid, entry.userid) for entry in chosen}
        written: list[str] = []
        try:
            with progress(chosen, "importing") as bar:
                for entry in bar:
                    ctx.store(domid, entry.userid, entry.data)
                    written.append(entry.userid)
        except domdata.Error as exc:
            raise _rolled_back(ctx, domid, exc, [(u, before[u]) for u in written]) from exc
    click.echo(f"imported {_count(len(chosen), 'item')} into {dom}", err=True)


def _choose(manifest: dict[str, Any], entries: list[archive.Entry], from_: str | None) -> list[archive.Entry]:
    """The items of the one incarnation to import."""
    held = list(dict.fromkeys((e.domid, e.uuid) for e in entries))
    if from_ is None:
        if len(held) > 1:
            raise click.UsageError(f"the archive holds {len(held)} domains: choose one with --from")
        return entries
    names = {(d["domid"], d["uuid"]): d.get("name") for d in manifest["domains"]}  # archive.read checked them
    matches = [i for i in held if from_ in (str(i[0]), i[1], names.get(i))]
    if len(matches) != 1:
        how_many = "no" if not matches else "more than one"
        raise click.UsageError(f"--from {from_}: {how_many} domain of the archive")
    return [e for e in entries if (e.domid, e.uuid) == matches[0]]


def _check(ctx: domdata.Context, domid: int, entry: archive.Entry) -> None:
    """Refuse what this store refuses, naming it, before anything is written."""
    try:
        domdata.check_userid(entry.userid)
    except domdata.InvalidUserid as exc:
        what = f"{exc.what}; nothing imported"
        raise domdata.InvalidUserid(what, store=ctx.store_url, domain=domid, userid=entry.userid) from None
    if len(entry.data) > ctx.max_item_size:
        raise domdata.DataTooLarge(
            f"{len(entry.data)} bytes is over the limit of {ctx.max_item_size} bytes per item;"
            " nothing imported",
            store=ctx.store_url,
            domain=domid,
            userid=entry.userid,
        )


def _rolled_back(
    ctx: domdata.Context, domid: int, exc: domdata.Error, written: list[tuple[str, bytes]]
) -> domdata.Error:
    """Put back what the import replaced; the error says what happened."""
    stored = _count(len(written), "item")
    try:
        for userid, data in reversed(written):
            ctx.store(domid, userid, data)
    except domdata.Error as again:
        what = f"{exc.what}; putting back the {stored} stored before failed too: {again}"
    else:
        what = f"{exc.what}; nothing imported (undid the {stored} stored before it)"
    return type(exc)(what, store=exc.store, domain=exc.domain, userid=exc.userid)
