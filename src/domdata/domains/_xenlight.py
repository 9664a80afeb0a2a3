"""libxenlight (libxl), the library ``xl`` uses, loaded at run time with ctypes.

Only what the ``xen`` source asks: a context, one domain's info, the list of
domains and a domain's name. The structure layouts are libxl's own
(``tools/libs/light/libxl_types.idl``), unchanged from Xen 4.17 to 4.22; no
compiler is involved on the user's machine. libxl's error log goes to an
anonymous file and its last line into the error domdata raises.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
import uuid as _uuid
from typing import Any

from .._errors import SourceUnavailable
from .._types import Incarnation

#: The sonames of the releases whose libxl_dominfo this module lays out, newest first.
SONAMES = tuple(f"libxenlight.so.4.{minor}" for minor in range(22, 16, -1))
_TOOLLOG = "libxentoollog.so.1"

_LIBXL_VERSION = 0  # LIBXL_VERSION in libxl.h
_ERROR_DOMAIN_NOTFOUND = -21
# Domids from DOMID_FIRST_RESERVED up name no domain but pseudo-domains
# (DOMID_SELF...); from 4.18 libxl_domain_info would answer DOMID_SELF with
# the caller's own domain.
_FIRST_RESERVED = 0x7FF0
_XTL_ERROR = 8
# XTL_STDIOSTREAM_HIDE_PROGRESS | XTL_STDIOSTREAM_PROGRESS_NO_CR
_XTL_FLAGS = 0o24
# "libxl: error: libxl.c:102:libxl_ctx_alloc: cannot open libxc handle: ..."
_LOG_PREFIX = re.compile(r"^\w+: \w+: (?:[\w.]+:\d+:)?")


class DomInfo(ctypes.Structure):
    """``libxl_dominfo``."""

    _fields_ = [
        ("uuid", ctypes.c_ubyte * 16),  # libxl_uuid
        ("domid", ctypes.c_uint32),
        ("ssidref", ctypes.c_uint32),
        ("ssid_label", ctypes.c_void_p),  # char *, owned by the struct
        ("running", ctypes.c_bool),
        ("blocked", ctypes.c_bool),
        ("paused", ctypes.c_bool),
        ("shutdown", ctypes.c_bool),
        ("dying", ctypes.c_bool),
        ("never_stop", ctypes.c_bool),
        ("shutdown_reason", ctypes.c_int),
        ("outstanding_memkb", ctypes.c_uint64),
        ("current_memkb", ctypes.c_uint64),
        ("shared_memkb", ctypes.c_uint64),
        ("paged_memkb", ctypes.c_uint64),
        ("max_memkb", ctypes.c_uint64),
        ("cpu_time", ctypes.c_uint64),
        ("vcpu_max_id", ctypes.c_uint32),
        ("vcpu_online", ctypes.c_uint32),
        ("cpupool", ctypes.c_uint32),
        ("gpaddr_bits", ctypes.c_uint8),
        ("domain_type", ctypes.c_int),
    ]

    @property
    def incarnation(self) -> Incarnation:
        return Incarnation(int(self.domid), str(_uuid.UUID(bytes=bytes(self.uuid))))


_INFO = ctypes.POINTER(DomInfo)
_lock = threading.Lock()
_libs: tuple[Any, Any, Any] | None = None


def _declare(libxl: Any, toollog: Any, libc: Any) -> None:
    p, i, u = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32
    for lib, name, restype, argtypes in (
        (libxl, "libxl_ctx_alloc", i, [ctypes.POINTER(p), i, ctypes.c_uint, p]),
        (libxl, "libxl_ctx_free", i, [p]),
        (libxl, "libxl_dominfo_init", None, [_INFO]),
        (libxl, "libxl_dominfo_dispose", None, [_INFO]),
        (libxl, "libxl_domain_info", i, [p, _INFO, u]),
        (libxl, "libxl_list_domain", _INFO, [p, ctypes.POINTER(i)]),
        (libxl, "libxl_dominfo_list_free", None, [_INFO, i]),
        (libxl, "libxl_domid_to_name", p, [p, u]),
        (toollog, "xtl_createlogger_stdiostream", p, [p, i, ctypes.c_uint]),
        (toollog, "xtl_logger_destroy", None, [p]),
        (libc, "tmpfile", p, []),
        (libc, "fileno", i, [p]),
        (libc, "rewind", None, [p]),
        (libc, "fclose", i, [p]),
        (libc, "free", None, [p]),
    ):
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes


def _load() -> tuple[Any, Any, Any]:
    """libxenlight, libxentoollog and the C library, loaded once per process."""
    global _libs
    with _lock:
        if _libs is None:
            libxl, failures = None, []
            for soname in SONAMES:
                try:
                    libxl = ctypes.CDLL(soname)
                    break
                except OSError as exc:
                    failures.append(str(exc))
            if libxl is None:
                # A library that is there but does not load says more than the absent ones.
                broken = [f for f in failures if "cannot open shared object file" not in f]
                absent = f"not installed (looked for {SONAMES[-1]} to {SONAMES[0]}; Debian: libxenmisc4.17)"
                why = broken[0] if broken else absent
                raise SourceUnavailable(f"xen: cannot load libxenlight: {why}")
            toollog, libc = ctypes.CDLL(_TOOLLOG), ctypes.CDLL(None, use_errno=True)
            _declare(libxl, toollog, libc)
            _libs = libxl, toollog, libc
        return _libs


class Libxl:
    """One libxl context (``libxl_ctx``) with its logger; one call at a time.

    SourceUnavailable if libxenlight cannot be loaded, or cannot reach the
    hypervisor (``libxl_ctx_alloc`` fails: not a Xen host, or not root).
    """

    def __init__(self) -> None:
        self._libxl, self._toollog, self._libc = _load()
        self._mutex = threading.Lock()
        self._file = self._libc.tmpfile()
        if not self._file:
            raise SourceUnavailable(f"xen: cannot make libxl's log file: {os.strerror(ctypes.get_errno())}")
        self._logger = self._toollog.xtl_createlogger_stdiostream(self._file, _XTL_ERROR, _XTL_FLAGS)
        if not self._logger:  # libxl would log through a NULL pointer
            self._libc.fclose(self._file)
            raise SourceUnavailable("xen: cannot make libxl's logger: out of memory")
        ctx = ctypes.c_void_p()
        if self._libxl.libxl_ctx_alloc(ctypes.byref(ctx), _LIBXL_VERSION, 0, self._logger) != 0:
            why = self._last_error() or "libxl_ctx_alloc failed"
            self._close_log()
            raise SourceUnavailable(f"xen: libxenlight cannot reach the hypervisor: {why}")
        self._ctx = ctx

    def _last_error(self) -> str:
        """The last line libxl logged since the previous call, without its
        source position; the log starts afresh."""
        fd = self._libc.fileno(self._file)
        # The logger flushes after each message: the file holds them all.
        size = os.fstat(fd).st_size
        text = os.pread(fd, 4096, max(0, size - 4096)).decode(errors="replace")
        os.ftruncate(fd, 0)
        self._libc.rewind(self._file)
        lines = text.strip().splitlines()
        return _LOG_PREFIX.sub("", lines[-1]) if lines else ""

    def _context(self) -> ctypes.c_void_p:
        if not self._ctx:
            raise SourceUnavailable("xen: the libxl context is closed")
        return self._ctx

    def _failed(self, what: str) -> SourceUnavailable:
        return SourceUnavailable(f"xen: {what}: {self._last_error() or 'libxl failed'}")

    def incarnation(self, domid: int) -> Incarnation | None:
        """The domain with this domid, as ``libxl_domain_info`` finds it, or None."""
        if domid >= _FIRST_RESERVED:
            return None
        info = DomInfo()
        with self._mutex:
            ctx = self._context()
            self._libxl.libxl_dominfo_init(ctypes.byref(info))
            try:
                rc = self._libxl.libxl_domain_info(ctx, ctypes.byref(info), domid)
                if rc == _ERROR_DOMAIN_NOTFOUND:
                    self._last_error()  # libxl 4.18 and later log the miss
                    return None
                if rc != 0:
                    raise self._failed(f"cannot get the info of domain {domid}")
                return info.incarnation if info.domid == domid else None
            finally:
                self._libxl.libxl_dominfo_dispose(ctypes.byref(info))

    def incarnations(self) -> list[Incarnation]:
        """Every domain ``libxl_list_domain`` lists, by domid."""
        count = ctypes.c_int()
        with self._mutex:
            listed = self._libxl.libxl_list_domain(self._context(), ctypes.byref(count))
            if not listed:
                raise self._failed("cannot list domains")
            try:
                return [listed[i].incarnation for i in range(count.value)]
            finally:
                self._libxl.libxl_dominfo_list_free(listed, count)

    def name(self, domid: int) -> str | None:
        """The domain's name in XenStore (``libxl_domid_to_name``), or None."""
        with self._mutex:
            name = self._libxl.libxl_domid_to_name(self._context(), domid)
            if not name:
                return None
            try:
                return ctypes.string_at(name).decode(errors="replace")
            finally:
                self._libc.free(name)

    def _close_log(self) -> None:
        self._toollog.xtl_logger_destroy(self._logger)
        self._libc.fclose(self._file)

    def close(self) -> None:
        """Free the context (``libxl_ctx_free``) and the logger; once."""
        with self._mutex:
            if self._ctx:
                self._libxl.libxl_ctx_free(self._ctx)
                self._ctx = ctypes.c_void_p()
                self._close_log()
