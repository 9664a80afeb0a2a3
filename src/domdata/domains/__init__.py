"""Domain sources, chosen by name; each is imported only when used."""

from __future__ import annotations

import importlib

from .._errors import SourceUnavailable
from ..stores.base import Store
from .base import DomainSource
from .managed import ManagedDomains

__all__ = ["DomainSource", "ManagedDomains", "open_source"]


def open_source(spec: str, store: Store) -> DomainSource:
    """``managed`` (the domain table in *store*), ``libvirt:<uri>`` or ``xen``."""
    if spec == "managed":
        return ManagedDomains(store.domain_table())
    if spec == "xen":
        from .xen import XenDomains  # loads libxenlight: only when asked for

        return XenDomains()
    kind, sep, rest = spec.partition(":")
    if kind == "libvirt" and sep and rest:
        try:
            module = importlib.import_module("domdata.domains.libvirt")
        except ImportError as exc:
            raise SourceUnavailable(
                f"the libvirt source needs an optional extra: pip install 'domdata[libvirt]' ({exc})"
            ) from exc
        source: DomainSource = module.LibvirtDomains(rest)
        return source
    raise SourceUnavailable(f"unknown domain source {spec!r} (managed, libvirt:<uri>, xen)")
