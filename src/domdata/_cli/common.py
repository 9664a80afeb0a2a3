"""What both paths of the command line share, without click: the click
commands (``domdata.cli``) and the fast path of the single-item commands
(``domdata._cli.fast``) give the same statuses, write output by the same
rules and read DOM, stdin and option values the same way."""

from __future__ import annotations

import errno
import math
import os
import stat
import sys
from _thread import TIMEOUT_MAX

import domdata
from domdata._types import MAX_ITEM_SIZE_CAP as MAX_ITEM_SIZE_CAP  # the CLI's bound is the library's

# Not typing's: a single-item command imports no typing (issue 12).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from types import FrameType
    from typing import BinaryIO, NoReturn

    from domdata import Context, Item

#: Exit status per error class, most specific first.
EXIT_STATUS: dict[type[domdata.Error], int] = {
    domdata.InvalidDomain: 2,
    domdata.DomainNotFound: 3,
    domdata.InvalidUserid: 4,
    domdata.DataTooLarge: 5,
    domdata.LockTimeout: 6,
    domdata.StoreUnavailable: 7,
    domdata.CorruptItem: 8,
    domdata.DomainExists: 9,
    domdata.SourceUnavailable: 10,
    domdata.NotManaged: 11,
    domdata.ReapRefused: 12,
    domdata.InvalidData: 13,
    domdata.SourceMismatch: 15,
    domdata.NotClustered: 16,
    domdata.ChangesLost: 17,
}
#: The output of a command could not be written whole.
OUTPUT_FAILED = 14
#: ``lock``: COMMAND exists but cannot be run; COMMAND is not found (as in a shell).
CANNOT_RUN, NOT_FOUND = 126, 127
#: Ctrl-C (SIGINT), and a reader of stdout that went away (128 + SIGPIPE).
INTERRUPTED, BROKEN_PIPE = 130, 141


def exit_status(exc: domdata.Error) -> int:
    """The status a domdata error ends the command with. A malformed store URL
    or option is a usage error (2), as a malformed domid is."""
    if isinstance(exc, domdata.InvalidURL | domdata.InvalidOption):
        return 2
    return next((code for cls, code in EXIT_STATUS.items() if isinstance(exc, cls)), 1)


class BadValue(ValueError):
    """A command-line value is malformed: a usage error (click's BadParameter)."""


def shown(value: str) -> str:
    """*value* quoted on one line, control characters escaped."""
    return ascii(value) if not value.isprintable() else repr(value)


def is_domid(dom: str) -> bool:
    """A domid is ASCII digits, never other digits that str.isdigit accepts (superscripts...)."""
    return dom.isascii() and dom.isdigit()


def parse_dom(value: str) -> str:
    """DOM as given: a domid (normalised), a canonical uuid or a name; BadValue for
    an empty DOM, one with a control character, a domid outside 0..2^32-1 (a
    negative one too: ``-1`` is no name), digits other than 0-9 and a malformed uuid."""
    if not value or not value.isprintable():
        raise BadValue(f"{shown(value)} is not a domid, a uuid or a domain name")
    if value.isdigit() and not value.isascii():
        raise BadValue(f"{shown(value)}: a domid is written with the digits 0-9")
    try:
        return str(domdata.parse_dom(value))
    except domdata.InvalidDomain as exc:
        raise BadValue(exc.what) from None


def domid_of(ctx: Context, dom: str) -> int:
    """DOM (as ``parse_dom`` gives it) as a domid: itself if it is one (the call
    checks it lives), else looked up."""
    return int(dom) if is_domid(dom) else ctx.find(dom).domid


def check_no_nul(value: str) -> str:
    if "\0" in value:
        raise BadValue(f"{shown(value)} contains a NUL character")
    return value


def check_store(value: str) -> str:
    """--store as given: an empty one (``--store "$UNSET"``) would mean the default
    store, a silent surprise. (An empty DOMDATA_STORE is unset, as click reads it.)"""
    if not value:
        raise BadValue("the store URL is empty")
    return check_no_nul(value)


def check_host(value: str) -> str:
    if not value or not value.isprintable():
        raise BadValue(f"{shown(value)} is not a host name")
    return value


def check_lock_timeout(value: float) -> float:
    # A float range would let nan through (every comparison with it is false).
    if not (math.isfinite(value) and 0 <= value <= TIMEOUT_MAX):
        raise BadValue(f"{value} is not a number of seconds in 0..{TIMEOUT_MAX:.0f}")
    return value


def check_interval(value: float) -> float:
    """``watch --interval``: seconds a wait can take (click's range lets nan and inf through)."""
    if not (math.isfinite(value) and 0.1 <= value <= TIMEOUT_MAX):
        raise BadValue(f"{value} is not a number of seconds in 0.1..{TIMEOUT_MAX:.0f}")
    return value


def store_input(ctx: Context, domid: int, userid: str, stream: BinaryIO) -> None:
    """Store what *stream* holds as the item (empty input deletes it), reading
    one byte more than the limit at most: a huge input is never read whole.
    An input that cannot be read (a closed stdin, an I/O error) stores nothing."""
    try:
        data = stream.read(ctx.max_item_size + 1)
    except OSError as exc:
        what = f"cannot read the data: {exc.strerror or exc}"
        raise domdata.Error(what, store=ctx.store_url, domain=domid, userid=userid) from None
    try:
        ctx.store(domid, userid, data)
    except domdata.DataTooLarge as exc:
        # Reading stopped one byte past the limit: the input's size is unknown.
        raise domdata.DataTooLarge.over(
            ctx.max_item_size, store=exc.store, domain=exc.domain, userid=exc.userid
        ) from None


def unlinked(dom: str, userid: str, removed: bool) -> str:
    """What ``unlink`` says."""
    return f"removed {userid} of {dom}" if removed else f"{dom} has no {userid}: nothing to remove"


def table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], *, right: Sequence[str] = ()
) -> list[str]:
    """Rows under column headers, aligned (the columns named in *right* to the
    right); a value the library leaves out (None) prints as ``-``."""
    lines = [list(headers), *(["-" if cell is None else str(cell) for cell in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return [
        "  ".join(
            cell.rjust(width) if header in right else cell.ljust(width)
            for header, cell, width in zip(headers, line, widths, strict=True)
        ).rstrip()
        for line in lines
    ]


def items_table(items: Iterable[Item], *, all_hosts: bool) -> list[str]:
    """``list``'s human table of Items."""
    if all_hosts:
        return table(
            ("HOST", "DOMID", "UUID", "SIZE", "USERID"),
            ((i.host, i.domid, i.uuid, i.size, i.userid) for i in items),
            right=("DOMID", "SIZE"),
        )
    return table(
        ("DOMID", "UUID", "SIZE", "USERID"),
        ((i.domid, i.uuid, i.size, i.userid) for i in items),
        right=("DOMID", "SIZE"),
    )


def error_line(text: str) -> None:
    """One line on stderr (none if stderr is closed)."""
    if sys.stderr is not None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def write_lines(lines: Iterable[str]) -> None:
    """Text lines to stdout, by ``write_output``'s rules."""
    text = "".join(line + "\n" for line in lines)
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    write_output("-", text.encode(encoding, "backslashreplace"))


def write_output(output: str, data: bytes) -> None:
    """Write *data* whole to stdout or the file *output*, or fail with OUTPUT_FAILED:
    a short write is never a success. A reader that went away ends quietly."""
    where = "stdout" if output == "-" else output
    try:
        if output == "-":
            if sys.stdout is None or getattr(sys.stdout, "stdout_closed", False):  # streams.guard's
                raise OSError(errno.EBADF, "stdout is closed")
            _write_all(sys.stdout.buffer, data)
            return
        with OutputFile(output) as file:
            _write_all(file, data)
    except OSError as exc:
        output_failed(where, exc)


def output_failed(where: str, exc: OSError) -> NoReturn:
    """End the command for an output that could not be written: quietly with
    BROKEN_PIPE if its reader went away, else one line and OUTPUT_FAILED."""
    if isinstance(exc, BrokenPipeError):
        quiet_exit(BROKEN_PIPE)
    error_line(f"domdata: cannot write {shown(where)}: {exc.strerror or exc}")
    quiet_exit(OUTPUT_FAILED)


class OutputFile:
    """``-o FILE`` as a context manager giving a binary file: FILE is replaced
    only once the block wrote it whole. The block writes a temporary file
    beside FILE (mode 0600: items are private), flushed to disk and renamed
    over FILE when the block ends; if the block (or that) fails, the temporary
    file is removed and FILE is left as it was. The replacement gets FILE's
    owner and group (as far as this process may: root can) and its permission
    bits, without set-user-ID, set-group-ID and sticky (item data never
    becomes a privileged program); a new FILE stays 0600. A symbolic link's
    target is replaced, not the link; what is not a regular file (a FIFO, a
    device, ``/dev/stdout`` on a pipe) is written in place, as there is
    nothing to keep."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._temporary: str | None = None
        self._file: BinaryIO | None = None
        # The FILE replaced, as it was when the block began: its mode and owner go to the replacement.
        self._replaced: os.stat_result | None = None

    def __enter__(self) -> BinaryIO:
        if not self.path:  # not the current directory's name, as realpath would make it
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
        try:
            found: os.stat_result | None = os.stat(self.path)
        except FileNotFoundError:
            found = None
        in_place = found is not None and not stat.S_ISREG(found.st_mode)
        if in_place:
            fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
        else:
            self.path = os.path.realpath(self.path)
            directory, name = os.path.split(self.path)
            self._temporary = os.path.join(directory, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            fd = os.open(self._temporary, flags, 0o600)
            self._replaced = found
        self._file = open(fd, "wb")
        return self._file

    def __exit__(self, kind: object, exc: object, traceback: object) -> None:
        assert self._file is not None
        try:
            if kind is None:
                self._file.flush()
                if self._temporary is not None:
                    if self._replaced is not None:
                        self._take_over(self._file.fileno(), self._replaced)
                    os.fsync(self._file.fileno())
            self._file.close()
            if kind is None and self._temporary is not None:
                os.rename(self._temporary, self.path)
                self._temporary = None
        finally:
            if self._temporary is not None:
                try:  # noqa: SIM105 (contextlib: an import a single-item command does not pay)
                    self._file.close()  # still holding what could not be written
                except OSError:
                    pass  # the error that brought us here is the one to report
                os.unlink(self._temporary)

    @staticmethod
    def _take_over(fd: int, replaced: os.stat_result) -> None:
        """Give the temporary file the owner and group of the FILE it replaces
        (root can; another user only a group of its own), then its mode. As
        GNU ``sed -i`` does, what the process or the file system (vfat) does
        not allow is left as it was made: private."""
        for owner in ((replaced.st_uid, replaced.st_gid), (-1, replaced.st_gid)):
            try:
                os.fchown(fd, *owner)
                break
            except PermissionError:
                continue
        try:  # noqa: SIM105 (contextlib: an import a single-item command does not pay)
            os.fchmod(fd, stat.S_IMODE(replaced.st_mode) & 0o777)
        except PermissionError:
            pass


def _write_all(stream: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = stream.write(view)
        if not written:
            raise OSError(errno.ENOSPC, "short write: no space left")
        view = view[written:]
    stream.flush()


class Interrupted(BaseException):
    """Ctrl-C: raised by the SIGINT handler, past click (which would print two lines)."""


def interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


def quiet_exit(status: int) -> NoReturn:
    """Exit with *status*, and let no flush at exit write to a pipe that is gone."""
    try:
        stdout = sys.stdout.fileno() if sys.stdout is not None else 1
    except (OSError, ValueError):  # not a file (click's test runner)
        raise SystemExit(status) from None
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stdout)
    os.close(devnull)
    raise SystemExit(status)


def plug_closed_descriptors() -> None:
    """A closed stdin, stdout or stderr gets /dev/null, so that no file domdata
    opens (a database) takes descriptor 1 or 2 and receives output. Python has
    already set sys.stdout (or stdin, stderr) to None: retrieve sees that."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            devnull = os.open(os.devnull, os.O_RDWR)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
