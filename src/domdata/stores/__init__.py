"""Stores, chosen by URL scheme; each backend is imported only when used."""

from __future__ import annotations

import importlib

from .._errors import InvalidURL, StoreUnavailable
from ._url import split
from .base import (
    ClusterStore,
    DomainTable,
    HeldLock,
    OneStepTable,
    SharedDirectory,
    Store,
    StoreOptions,
)

__all__ = [
    "ClusterStore",
    "DomainTable",
    "HeldLock",
    "OneStepTable",
    "SharedDirectory",
    "Store",
    "StoreOptions",
    "default_url",
    "open_store",
]

_BACKENDS = {
    "sqlite": "domdata.stores.sqlite:SQLiteStore",
    "libxl": "domdata.stores.libxl:LibxlStore",
    "postgresql": "domdata.stores.postgresql:PostgreSQLStore",
    "postgres": "domdata.stores.postgresql:PostgreSQLStore",
}


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
    target = _BACKENDS.get(scheme)
    if target is None:
        known = ", ".join(sorted(_BACKENDS))
        raise InvalidURL(f"unknown store scheme {scheme!r} (known: {known})", store=url)
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = "postgresql" if scheme.startswith("postgres") else scheme
        raise StoreUnavailable(
            f"this store needs an optional extra: pip install 'domdata[{extra}]' ({exc})", store=url
        ) from exc
    store: Store = getattr(module, class_name)(url, options)
    return store
