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

# Not typing's: importing typing costs more than the rest of ``import domdata``.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._changes import Change, Listing, Retention
    from ._context import DEFAULT_LOCK_TIMEOUT, Context, bind, open, reap_earlier_boots
    from ._errors import (
        ChangesLost,
        CorruptItem,
        DataTooLarge,
        DomainExists,
        DomainNotFound,
        Error,
        InvalidData,
        InvalidDomain,
        InvalidOption,
        InvalidURL,
        InvalidUserid,
        ItemsClash,
        LeftBehind,
        LockTimeout,
        NotClustered,
        NotManaged,
        ReapRefused,
        SourceMismatch,
        SourceUnavailable,
        StoreUnavailable,
    )
    from ._report import ReapReport, StoreInfo
    from ._types import (
        DEFAULT_MAX_ITEM_SIZE,
        MAX_DOMID,
        Domain,
        Incarnation,
        Item,
        canonical_uuid,
        parse_dom,
    )
    from ._userid import check_userid
    from ._xen_view import XenView

    __version__: str

#: Where each public name lives: a module is imported when one of its names is
#: first asked for, so a command imports only what it runs.
_HOMES = {
    "._changes": ("Change", "Listing", "Retention"),
    "._context": ("DEFAULT_LOCK_TIMEOUT", "Context", "bind", "open", "reap_earlier_boots"),
    "._errors": (
        "ChangesLost",
        "CorruptItem",
        "DataTooLarge",
        "DomainExists",
        "DomainNotFound",
        "Error",
        "InvalidData",
        "InvalidDomain",
        "InvalidOption",
        "InvalidURL",
        "InvalidUserid",
        "ItemsClash",
        "LeftBehind",
        "LockTimeout",
        "NotClustered",
        "NotManaged",
        "ReapRefused",
        "SourceMismatch",
        "SourceUnavailable",
        "StoreUnavailable",
    ),
    "._report": ("ReapReport", "StoreInfo"),
    "._types": (
        "DEFAULT_MAX_ITEM_SIZE",
        "MAX_DOMID",
        "Domain",
        "Incarnation",
        "Item",
        "canonical_uuid",
        "parse_dom",
    ),
    "._userid": ("check_userid",),
    "._xen_view": ("XenView",),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> object:
    # PEP 562: the public names load on first use (``from domdata import X`` too).
    home = _HOME.get(name)
    if home is not None:
        # The import statement's own machinery (importlib's import_module costs
        # a single-item command more than the module it would load).
        value = getattr(__import__(home[1:], globals(), None, [name], 1), name)
        globals()[name] = value
        return value
    # domdata.__version__, from the package metadata; importlib.metadata costs
    # more than the rest of the package, so only when asked.
    if name == "__version__":
        from importlib.metadata import version

        return version("domdata")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME, "__version__"})


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
    "InvalidOption",
    "InvalidURL",
    "InvalidUserid",
    "Item",
    "ItemsClash",
    "LeftBehind",
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
