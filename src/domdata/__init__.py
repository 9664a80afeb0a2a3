"""domdata: private data kept alongside a virtual machine, with the domain's lifetime.

The Python counterpart of libxl's userdata calls::

    import domdata

    with domdata.open() as dd:                  # SQLite, managed domains
        dom = dd.managed.create("web1")
        dd.store(dom.domid, "xl", b"name = 'web1'\\n")
        assert dd.retrieve(dom.domid, "xl") == b"name = 'web1'\\n"
        with dd.lock(dom.domid):                # read-modify-write
            dd.store(dom.domid, "xl", dd.retrieve(dom.domid, "xl") + b"memory = 512\\n")
        dd.destroy(dom.domid)                   # the domain and its data go
"""

from ._changes import Change, Listing, Retention
from ._context import DEFAULT_LOCK_TIMEOUT, Context, ReapReport, open
from ._errors import (
    ChangesLost,
    CorruptItem,
    DataTooLarge,
    DomainExists,
    DomainNotFound,
    Error,
    InvalidData,
    InvalidDomain,
    InvalidUserid,
    LockTimeout,
    NotManaged,
    ReapRefused,
    SourceUnavailable,
    StoreUnavailable,
)
from ._types import DEFAULT_MAX_ITEM_SIZE, Domain, Incarnation, Item
from ._userid import check_userid

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_MAX_ITEM_SIZE",
    "Change",
    "ChangesLost",
    "Context",
    "CorruptItem",
    "DataTooLarge",
    "Domain",
    "DomainExists",
    "DomainNotFound",
    "Error",
    "Incarnation",
    "InvalidData",
    "InvalidDomain",
    "InvalidUserid",
    "Item",
    "Listing",
    "LockTimeout",
    "NotManaged",
    "ReapRefused",
    "ReapReport",
    "Retention",
    "SourceUnavailable",
    "StoreUnavailable",
    "check_userid",
    "open",
]
