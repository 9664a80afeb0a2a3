"""The standard streams of the click command line, made to fail as the fast
path's do (``domdata._cli.common.write_output``): whatever a command prints,
through click or not, one rule for stdout, stdin and stderr.

click turns an OSError from writing stdout into a traceback (EPIPE: status 1)
and writes nothing, silently, to a closed stdout. So ``guard`` puts in place,
before click runs, a stdout whose every write failure is an ``OutputFailed``
(a BaseException: it passes click and the commands' error handling alike,
to ``domdata.cli.main``, which ends with status 14, or 141 for EPIPE); a
closed stdout is one whose first write fails (a command that prints nothing
still succeeds). A closed stdin is one whose reads fail (EBADF, "stdin is
closed"), which the commands report as their input failing. A closed stderr
is /dev/null: click would write its usage errors to stdout instead.
"""

from __future__ import annotations

import errno
import io
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer


class OutputFailed(BaseException):
    """Writing stdout failed with *error*; the command ends, nothing else is written."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


class _Stdout(io.RawIOBase):
    """Descriptor 1 (or, when stdout was closed, nothing: every write fails).
    After the first failure, writes are dropped: the failure is being
    reported, and the interpreter's last flush must not raise again."""

    def __init__(self, closed: bool) -> None:
        super().__init__()
        self._gone = closed
        self._failed = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return 1

    def isatty(self) -> bool:
        return not self._gone and os.isatty(1)

    def write(self, data: ReadableBuffer) -> int:
        size = memoryview(data).nbytes
        if self._failed:
            return size
        try:
            if self._gone:
                raise OSError(errno.EBADF, "stdout is closed")
            return os.write(1, data)
        except OSError as exc:
            self._failed = True
            raise OutputFailed(exc) from None


class _ClosedStdin(io.RawIOBase):
    """A stdin that was closed: reading it fails as reading a closed descriptor does."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        raise OSError(errno.EBADF, "stdin is closed")


class _Text(io.TextIOWrapper):
    """sys.stdout, saying whether the process was started with stdout closed
    (``common.write_output`` fails even for no bytes then, as the fast path does)."""

    stdout_closed = False


def guard() -> None:
    """Replace sys.stdout, and a closed sys.stdin or sys.stderr, as the module says.
    Call it before anything is written (after ``plug_closed_descriptors``)."""
    before = sys.stdout
    stdout = _Text(
        io.BufferedWriter(_Stdout(closed=before is None)),
        encoding=getattr(before, "encoding", None) or "utf-8",
        errors=getattr(before, "errors", None) or "strict",
        line_buffering=bool(getattr(before, "line_buffering", False)),
    )
    stdout.stdout_closed = before is None
    sys.stdout = stdout
    if sys.stdin is None:
        sys.stdin = io.TextIOWrapper(io.BufferedReader(_ClosedStdin()), encoding="utf-8")
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (the process's stderr, for its lifetime)
