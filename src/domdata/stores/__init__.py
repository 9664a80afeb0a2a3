"""Stores, chosen by URL scheme; each backend is imported only when used."""

from __future__ import annotations

import os
import sys

from .._errors import InvalidURL, StoreUnavailable
from ._url import check_url, split_checked
from .base import (
    ClusterStore,
    DomainTable,
    OneStepTable,
    SharedDirectory,
    Store,
    StoreOptions,
)

__all__ = [
    "ClusterStore",
    "DomainTable",
    "OneStepTable",
    "SharedDirectory",
    "Store",
    "StoreOptions",
    "default_url",
    "open_store",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_SCHEMES = ("libxl", "postgres", "postgresql", "sqlite")


def _backend(scheme: str) -> Callable[[str, StoreOptions], Store]:
    """The store class of a known *scheme*, its module imported now: each only when used."""
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        return SQLiteStore
    if scheme == "libxl":
        from .libxl import LibxlStore

        return LibxlStore
    from .postgresql import PostgreSQLStore

    return PostgreSQLStore


def default_url() -> str:
    """``sqlite:///<user state dir>/domdata.db`` (platformdirs' user state
    directory), the directory created if need be: the one directory domdata
    ever creates."""
    state = _state_dir()
    try:
        os.makedirs(state, mode=0o700, exist_ok=True)
    except (OSError, ValueError) as exc:
        raise StoreUnavailable(f"cannot create the state directory {state}: {exc}") from exc
    path = os.path.join(state, "domdata.db")
    if not _URL_SAFE.issuperset(path):
        from urllib.parse import quote

        # Escaped: a '#', '?' or '%' in XDG_STATE_HOME is part of the path.
        path = quote(path)
    return f"sqlite://{path}"


#: What a path keeps as it is in a URL (``urllib.parse.quote``'s safe characters).
_URL_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~/")


def _state_dir() -> str:
    """``platformdirs.user_state_path("domdata")``. Importing platformdirs (and
    the pathlib and tempfile it imports) costs as much as a whole single-item
    command, so the usual Linux cases are answered here as it answers them
    (tests/test_default_store.py checks each against it): an absolute
    ``XDG_STATE_HOME``, or none and an absolute ``HOME``, each already in
    normal form. Any other case asks platformdirs."""
    xdg, home = os.environ.get("XDG_STATE_HOME", ""), os.environ.get("HOME", "")
    base = xdg or (os.path.join(home, ".local/state") if home.startswith("/") else "")
    if sys.platform == "linux" and base.startswith("/") and os.path.normpath(base) == base:
        return os.path.join(base, "domdata")
    from platformdirs import user_state_path

    return str(user_state_path("domdata"))


def open_store(url: str, options: StoreOptions) -> Store:
    """Open the store that *url* names (``sqlite:///path``, ``libxl:///dir``, ``postgresql://...``).

    InvalidURL, before anything is opened, for a URL that begins or ends with
    a space or holds a control character (each scheme would read it its own
    way), or whose host has an unmatched ``[`` or ``]``."""
    check_url(url)
    scheme = split_checked(url)[0]
    if scheme not in _SCHEMES:
        raise InvalidURL(f"unknown store scheme {scheme!r} (known: {', '.join(_SCHEMES)})", store=url)
    try:
        backend = _backend(scheme)
    except ImportError as exc:
        extra = "postgresql" if scheme.startswith("postgres") else scheme
        raise StoreUnavailable(
            f"this store needs an optional extra: pip install 'domdata[{extra}]' ({exc})", store=url
        ) from exc
    return backend(url, options)
