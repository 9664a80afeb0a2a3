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
from ._context import DEFAULT_LOCK_TIMEOUT, Context, StoreInfo, bind, open, reap_earlier_boots
from ._errors import (
    ChangesLost,
    CorruptItem,
    DataTooLarge,
    DomainExists,
    DomainNotFound,
    Error,
    InvalidData,
    InvalidDomain,
    InvalidURL,
    InvalidUserid,
    ItemsClash,
    LockTimeout,
    NotClustered,
    NotManaged,
    ReapRefused,
    SourceMismatch,
    SourceUnavailable,
    StoreUnavailable,
)
from ._types import (
    DEFAULT_MAX_ITEM_SIZE,
    MAX_DOMID,
    Domain,
    Incarnation,
    Item,
    ReapReport,
    XenView,
    canonical_uuid,
    parse_dom,
)
from ._userid import check_userid


def __getattr__(name: str) -> str:
    # domdata.__version__, from the package metadata; importlib.metadata costs
    # more than the rest of the package, so only when asked.
    if name == "__version__":
        from importlib.metadata import version

        return version("domdata")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_MAX_ITEM_SIZE",
    "MAX_DOMID",
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
    "InvalidURL",
    "InvalidUserid",
    "Item",
    "ItemsClash",
    "Listing",
    "LockTimeout",
    "NotClustered",
    "NotManaged",
    "ReapRefused",
    "ReapReport",
    "Retention",
    "SourceMismatch",
    "SourceUnavailable",
    "StoreInfo",
    "StoreUnavailable",
    "XenView",
    "bind",
    "canonical_uuid",
    "check_userid",
    "open",
    "parse_dom",
    "reap_earlier_boots",
]
