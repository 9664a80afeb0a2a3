"""libxl's own userdata calls, for tests: ``store DOMID USERID`` (data on
stdin) or ``retrieve DOMID USERID`` (data on stdout).

Run by ``conftest.libxl_userdata`` with the shim preloaded and a directory
bind-mounted over ``/var/lib`` in a private mount namespace, because
libxenlight writes to the ``/var/lib/xen`` it was built with. Exits with
libxl's error code (negated) when a call fails.
"""

from __future__ import annotations

import ctypes
import sys

from domdata.domains._xenlight import SONAMES


def main(operation: str, domid: int, userid: str) -> int:
    libxl = next(lib for lib in map(_load, SONAMES) if lib is not None)
    toollog = ctypes.CDLL("libxentoollog.so.1")
    toollog.xtl_createlogger_stdiostream.restype = ctypes.c_void_p
    stderr = ctypes.c_void_p.in_dll(ctypes.CDLL(None), "stderr")
    logger = ctypes.c_void_p(toollog.xtl_createlogger_stdiostream(stderr, 8, 0o24))
    ctx = ctypes.c_void_p()
    if libxl.libxl_ctx_alloc(ctypes.byref(ctx), 0, 0, logger):
        return 1
    try:
        if operation == "store":
            data = sys.stdin.buffer.read()
            rc = libxl.libxl_userdata_store(ctx, domid, userid.encode(), data, len(data))
        else:
            buffer, size = ctypes.POINTER(ctypes.c_ubyte)(), ctypes.c_int()
            rc = libxl.libxl_userdata_retrieve(
                ctx, domid, userid.encode(), ctypes.byref(buffer), ctypes.byref(size)
            )
            if rc == 0 and size.value:
                sys.stdout.buffer.write(ctypes.string_at(buffer, size.value))
                ctypes.CDLL(None).free(buffer)
    finally:
        libxl.libxl_ctx_free(ctx)
    return -int(rc)


def _load(soname: str) -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(soname)
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
