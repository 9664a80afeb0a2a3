"""How much of the local Xen hypervisor's domains a source sees.

An enum, in a module of its own: ``enum`` costs a single-item command a
tenth of its start-up budget, and only reap and a libxl store ask.
"""

import enum


class XenView(enum.Enum):
    """How much of the local Xen hypervisor's domains a domain source sees."""

    #: None of them (managed domains, KVM, a remote host...).
    NONE = "none"
    #: Those libvirt's libxl driver created, which carry a ``libvirt-xml`` item.
    LIBVIRT = "libvirt"
    #: Every one, whoever started it (``xl create`` included).
    ALL = "all"
