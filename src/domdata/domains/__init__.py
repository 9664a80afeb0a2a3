"""Domain sources, chosen by name; each is imported only when used."""

from __future__ import annotations

from .._errors import SourceUnavailable
from .base import DomainSource
from .managed import ManagedDomains

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple

    from ..stores.base import Store
else:
    from .._named import NamedTuple

__all__ = ["DomainSource", "ManagedDomains", "SourceSpec", "on_this_host", "open_source", "parse_source"]

_KNOWN = "managed, libvirt:<uri>, xen"


def on_this_host(uri: str) -> bool:
    """Whether a libvirt URI names a hypervisor of this host: it names no
    remote host (``qemu:///system``, ``xen:///``, ``test:///default``, a
    ``+unix`` socket), unlike ``qemu+ssh://host/system``."""
    from urllib.parse import urlsplit  # only for libvirt: it imports ipaddress

    try:
        return urlsplit(uri).hostname in (None, "localhost")
    except ValueError:  # not a URI (libvirt refuses it when connecting)
        return False


class SourceSpec(NamedTuple):
    """A domain source as named: its kind (managed, libvirt, xen) and, for libvirt, the URI."""

    kind: str
    uri: str = ""

    @property
    def dies_with_host(self) -> bool:
        """The source's ``dies_with_host``, known without opening it."""
        return self.kind == "xen" or (self.kind == "libvirt" and on_this_host(self.uri))


def parse_source(spec: str) -> SourceSpec:
    """``managed``, ``libvirt:<uri>`` or ``xen``; SourceUnavailable for anything else."""
    if spec in ("managed", "xen"):
        return SourceSpec(spec)
    kind, sep, rest = spec.partition(":")
    if kind == "libvirt" and sep and rest:
        return SourceSpec("libvirt", rest)
    raise SourceUnavailable(f"unknown domain source {spec!r} ({_KNOWN})")


def open_source(spec: str, store: Store | None) -> DomainSource:
    """The source *spec* names; ``managed`` keeps its domains in *store*."""
    parsed = parse_source(spec)
    if parsed.kind == "managed":
        if store is None:
            raise TypeError("the managed source keeps its domains in a store")
        return ManagedDomains(store.domain_table())
    if parsed.kind == "xen":
        from .xen import XenDomains  # loads libxenlight: only when asked for

        return XenDomains()
    try:
        from .libvirt import LibvirtDomains
    except ImportError as exc:
        raise SourceUnavailable(
            f"the libvirt source needs an optional extra: pip install 'domdata[libvirt]' ({exc})"
        ) from exc
    return LibvirtDomains(parsed.uri)
