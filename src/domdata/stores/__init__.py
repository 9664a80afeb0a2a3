"""Stores, chosen by URL scheme; each backend is imported only when used."""

from __future__ import annotations

from .._errors import InvalidURL, StoreUnavailable
from ._url import split
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
    """``sqlite:///<user state dir>/domdata.db`` (platformdirs), the directory
    created if need be: the one directory domdata ever creates."""
    from pathlib import Path
    from urllib.parse import quote

    from platformdirs import user_state_path

    state = Path(user_state_path("domdata"))
    try:
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:
        raise StoreUnavailable(f"cannot create the state directory {state}: {exc}") from exc
    # Escaped: a '#', '?' or '%' in XDG_STATE_HOME is part of the path.
    return f"sqlite://{quote(str(state / 'domdata.db'))}"


def open_store(url: str, options: StoreOptions) -> Store:
    """Open the store that *url* names (``sqlite:///path``, ``libxl:///dir``, ``postgresql://...``)."""
    scheme = split(url)[0]
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
