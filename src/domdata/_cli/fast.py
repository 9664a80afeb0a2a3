"""The ``domdata`` entry point: the single-item commands without click.

A shell loop pays one process per call, and importing click costs more than
a whole ``retrieve`` should (issue 12). So ``retrieve DOM USERID``, ``store
DOM USERID [FILE]``, ``unlink [-q] DOM USERID`` and ``list DOM``, with only
``--store``, ``--domains``, ``--host``, ``--lock-timeout``, ``--max-item-size``
and ``--[not-]durable`` before them (or their ``DOMDATA_*`` variables), run
here. Anything else, anything malformed (which click reports as a usage
error) and any command that ``domdata lock`` runs go to the click command
line (``domdata.cli``) untouched. Both paths print, exit and read the same way
through ``domdata._cli.common``.
"""

from __future__ import annotations

import codecs
import os
import sys

import domdata

from .common import (
    BROKEN_PIPE,
    INTERRUPTED,
    MAX_ITEM_SIZE_CAP,
    BadValue,
    check_host,
    check_lock_timeout,
    check_no_nul,
    check_store,
    domid_of,
    error_line,
    exit_status,
    items_table,
    parse_dom,
    plug_closed_descriptors,
    quiet_exit,
    store_input,
    unlinked,
    write_lines,
    write_output,
)

# Not typing's: a single-item command imports no typing (issue 12).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import BinaryIO, NoReturn

    from domdata import Context

#: The global options taken here, each with its variable (click reads an empty one as unset).
_VALUED = {
    "--store": "DOMDATA_STORE",
    "--domains": "DOMDATA_DOMAINS",
    "--host": "DOMDATA_HOST",
    "--lock-timeout": "DOMDATA_LOCK_TIMEOUT",
    "--max-item-size": "DOMDATA_MAX_ITEM_SIZE",
}
_FLAGS = {"--durable": True, "--not-durable": False}
#: ``domdata lock``'s hand-off (``domdata._handoff.ENV``): click's path adopts the lock held.
LOCKED_ENV = "DOMDATA_LOCKED"
#: How many arguments each command takes here: (fewest, most).
_ARITY = {"retrieve": (2, 2), "store": (2, 3), "unlink": (2, 2), "list": (1, 1)}


class _Call:
    """A command line the fast path runs: the command, its arguments and the
    global options, converted and checked as click does; ValueError (BadValue,
    or a conversion's) for anything click would refuse."""

    def __init__(self, command: str, args: list[str], given: Mapping[str, str], environ: Mapping[str, str]):
        raw = {
            name: given[name] if name in given else environ.get(var) or None for name, var in _VALUED.items()
        }
        self.command = command
        self.args = args
        self.quiet = False
        self.durable = True
        self.store = None if raw["--store"] is None else check_store(raw["--store"])
        self.domains = None if raw["--domains"] is None else check_no_nul(raw["--domains"])
        self.host = None if raw["--host"] is None else check_host(raw["--host"])
        timeout, size = raw["--lock-timeout"], raw["--max-item-size"]
        default_timeout = domdata.DEFAULT_LOCK_TIMEOUT
        self.lock_timeout = check_lock_timeout(default_timeout if timeout is None else float(timeout))
        self.max_item_size = domdata.DEFAULT_MAX_ITEM_SIZE if size is None else int(size)
        if not 1 <= self.max_item_size <= MAX_ITEM_SIZE_CAP:
            raise BadValue(f"{self.max_item_size} is not in 1..{MAX_ITEM_SIZE_CAP}")

    def open(self) -> Context:
        return domdata.open(
            self.store,
            self.domains,
            durable=self.durable,
            lock_timeout=self.lock_timeout,
            max_item_size=self.max_item_size,
            host=self.host,
        )


def _ascii(stream: object) -> bool:
    encoding = getattr(stream, "encoding", None)
    return stream is not None and (not encoding or codecs.lookup(encoding).name == "ascii")


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> _Call | None:
    """The command line as a call the fast path runs, or None for click to take it."""
    if any(
        (name.startswith("_") and name.endswith("_COMPLETE"))  # shell completion
        or (name == LOCKED_ENV and value)
        for name, value in environ.items()
    ):
        return None
    if _ascii(sys.stdout) or _ascii(sys.stderr):
        return None  # click writes UTF-8 to an ASCII stream
    given: dict[str, str] = {}
    durable: bool | None = None
    rest = list(argv)
    while rest and rest[0].startswith("-"):
        token = rest.pop(0)
        name, equals, value = token.partition("=")
        if not equals and token in _FLAGS and durable is None:
            durable = _FLAGS[token]
            continue
        if name not in _VALUED or name in given:
            return None
        if not equals:
            if not rest or rest[0].startswith("-"):
                return None
            value = rest.pop(0)
        given[name] = value
    if not rest or rest[0] not in _ARITY:
        return None
    command, *words = rest
    quiet = False
    if command == "unlink" and any(w in ("-q", "--quiet") for w in words):
        quiet = True
        words = [w for w in words if w not in ("-q", "--quiet")]
    fewest, most = _ARITY[command]
    if any(w.startswith("-") for w in words[:2]) or not fewest <= len(words) <= most:
        return None
    if len(words) == 3 and words[2].startswith("-") and words[2] != "-":
        return None
    try:
        call = _Call(command, [parse_dom(words[0]), *words[1:]], given, environ)
    except ValueError:  # BadValue, or a number that is not one
        return None
    call.quiet = quiet
    call.durable = True if durable is None else durable
    return call


def _input(name: str) -> BinaryIO | None:
    """The FILE of ``store`` opened as click opens it; None where click would refuse it."""
    if name == "-":
        return None if sys.stdin is None else sys.stdin.buffer
    try:
        return open(name, "rb")
    except OSError:
        return None


def run(call: _Call, stream: BinaryIO | None) -> None:
    """Run *call* (``store``: reading *stream*) as the click command does."""
    ctx: Context | None = None
    status = 0
    try:
        ctx = call.open()
        dom, userid = call.args[0], call.args[1] if len(call.args) > 1 else ""
        if call.command == "retrieve":
            write_output("-", ctx.retrieve(domid_of(ctx, dom), userid))
        elif call.command == "store" and stream is not None:
            store_input(ctx, domid_of(ctx, dom), userid, stream)
        elif call.command == "unlink":
            removed = ctx.unlink(domid_of(ctx, dom), userid)
            if not call.quiet:
                write_lines([unlinked(dom, userid, removed)])
        else:
            write_lines(items_table(ctx.list(domid_of(ctx, dom)), all_hosts=False))
    except domdata.Error as exc:
        error_line(f"domdata: {exc}")
        status = exit_status(exc)
    finally:
        if stream is not None and stream is not getattr(sys.stdin, "buffer", None):
            stream.close()
        if ctx is not None:
            ctx.close()
    if status:
        raise SystemExit(status)


def exit_now() -> NoReturn:
    """Exit with status 0 without Python's finalisation: once ``main`` has
    returned, the command's output is written and its store closed, so there
    is nothing left to do but tear down every module, a tenth of a
    single-item command's time."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()  # nothing is left to write (every write flushes and reports its failure)
    os._exit(0)


def main() -> None:
    """``domdata`` and ``python -m domdata``: returns when a single-item
    command succeeded; exits (SystemExit) otherwise, and through click."""
    plug_closed_descriptors()
    try:
        call = parse(sys.argv[1:], os.environ)
        stream = None
        if call is not None and call.command == "store":
            stream = _input(call.args[2] if len(call.args) == 3 else "-")
            if stream is None:
                call = None
        if call is None:
            from ..cli import main as click_main

            click_main()
            return
        run(call, stream)
    except BrokenPipeError:
        quiet_exit(BROKEN_PIPE)
    except KeyboardInterrupt:  # Python's own SIGINT handler: no signal module to import
        error_line("domdata: interrupted")
        raise SystemExit(INTERRUPTED) from None
