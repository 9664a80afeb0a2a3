"""``xen``: the domains of the local Xen hypervisor, through libxenlight.

The authority on a host where ``xl`` starts domains without libvirt. A domain
exists while ``libxl_domain_info`` finds it, the rule libxl applies after
taking a domain's userdata lock; its uuid is libxl's, in lower case. The
library is loaded with ctypes when the source is opened (see
``_xenlight``), so ``import domdata`` never loads it.

``domdata watch`` with this source polls libxl's domain list (``watch.py``):
Xen has no event a process other than the toolstack can count on.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._types import Domain, Incarnation
from .._xen_view import XenView
from ._xenlight import Libxl
from .base import Closed, DomainSource


class XenDomains(DomainSource):
    """The live domains of this host's Xen, as libxl sees them.

    SourceUnavailable (one line) when libxenlight is not installed or cannot
    reach the hypervisor, at opening or on any later call.
    """

    spec = "xen"
    #: Xen sees every domain, whoever started it.
    xen_view = XenView.ALL
    #: A host's reboot ends every Xen domain on it (DESIGN section 1).
    dies_with_host = True

    def __init__(self) -> None:
        self._libxl: Libxl | Closed = Libxl()

    def _named(self, incarnation: Incarnation) -> Domain:
        return Domain(incarnation.domid, incarnation.uuid, self._libxl.name(incarnation.domid))

    def incarnation(self, domid: int) -> Incarnation | None:
        return self._libxl.incarnation(domid)

    def domains(self) -> Sequence[Domain]:
        return [self._named(incarnation) for incarnation in self._libxl.incarnations()]

    def incarnations(self) -> set[Incarnation]:
        # Without names: one call, however many domains run.
        return set(self._libxl.incarnations())

    def by_domid(self, domid: int) -> Domain | None:
        incarnation = self._libxl.incarnation(domid)
        return None if incarnation is None else self._named(incarnation)

    def by_uuid(self, uuid: str) -> Sequence[Domain]:
        return [self._named(i) for i in self._libxl.incarnations() if i.uuid == uuid]

    def close(self, store: str | None = None) -> None:
        libxl, self._libxl = self._libxl, Closed(store)
        libxl.close()

