"""The DomainSource interface: who says which domain incarnations are alive."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from .._errors import DomainNotFound, StoreUnavailable
from .._types import Domain, Incarnation, parse_dom

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .._xen_view import XenView


class Closed:
    """What a closed source keeps in place of its connection (or table): every
    use raises StoreUnavailable, as a call on the closed context does, and
    none touches a descriptor the source held (its number may name another
    file by then). Closing it again does nothing."""

    __slots__ = ("_store",)

    def __init__(self, store: str | None) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        raise StoreUnavailable.closed(self._store)

    def close(self) -> None:
        """Closed already."""


class DomainSource(ABC):
    """The authority on live domains: managed by domdata, or libvirt, or..."""

    #: How the source was named (``managed``, ``libvirt:qemu:///system``).
    spec: str
    #: Its domains run on this host and end when it goes down: data written
    #: during an earlier boot belongs to an ended incarnation (DESIGN section 1).
    dies_with_host: bool = False

    @property
    def xen_view(self) -> XenView:
        """Which of the local Xen hypervisor's domains this source sees: none,
        unless the source says otherwise."""
        from .._xen_view import XenView  # an enum: imported only where Xen matters

        return XenView.NONE

    @abstractmethod
    def incarnation(self, domid: int) -> Incarnation | None:
        """The live incarnation with this domid, or None."""

    @abstractmethod
    def domains(self) -> Sequence[Domain]:
        """Every live domain, by domid."""

    def incarnations(self) -> set[Incarnation]:
        """Every live incarnation (what ``reap`` keeps)."""
        return {d.incarnation for d in self.domains()}

    def lives(self, incarnation: Incarnation) -> bool:
        """Whether this very incarnation is alive, asked on its own: ``reap``
        confirms each death so, before it deletes anything."""
        return self.incarnation(incarnation.domid) == incarnation

    def find(self, text: str) -> Domain:
        """The live domain named by a domid, a uuid or a name; DomainNotFound if none.

        A uuid that two live domains share (a localhost migration) is refused
        as ambiguous: name the domid instead.
        """
        dom = parse_dom(text)
        if isinstance(dom, int):
            for_domid = self.by_domid(dom)
            if for_domid is None:
                raise DomainNotFound("no such domain", domain=dom)
            return for_domid
        if isinstance(dom, str):
            named = self.by_name(dom)
            if named is None:
                raise DomainNotFound("no such domain", domain=text)
            return named
        found = self.by_uuid(str(dom))
        if len(found) == 1:
            return found[0]
        what = "no such domain" if not found else "uuid names several domains: use a domid"
        raise DomainNotFound(what, domain=text)

    def by_domid(self, domid: int) -> Domain | None:
        return next((d for d in self.domains() if d.domid == domid), None)

    def by_uuid(self, uuid: str) -> Sequence[Domain]:
        return [d for d in self.domains() if d.uuid == uuid]

    def by_name(self, name: str) -> Domain | None:
        return next((d for d in self.domains() if d.name == name), None)

    def close(self, store: str | None = None) -> None:
        """Release connections (the default holds none). A source that holds
        some raises StoreUnavailable at every later call, naming *store*: the
        store of the context that closed it."""
