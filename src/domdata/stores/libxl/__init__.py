"""``libxl:///var/lib/xen``: the very files and lock of Xen's libxl (DESIGN section 4).

Everything lives flat in one directory, named as libxl names it::

    userdata-d.<domid>.<uuid>.<userid>              an item: the raw bytes, mode 0600
    userdata-n.<domid>.<uuid>.<userid>              its temporary file while it is written
    userdata-l.<domid>.<uuid>.domain-userdata-lock  the domain's lock (flock + inode re-check)
    userdata-m.<domid>.<uuid>.domdata-domain        a managed domain's record: {"name": ...}
    domdata-domid.<domid>                           symbolic link naming that domid's record

The managed record's letter ``m`` keeps it out of every userid's way (no
userid can overwrite it), while libxl's own destroy, which unlinks
``userdata-?.<domid>.<uuid>.*``, still takes it with the domain's data.
Every path is opened relative to the directory's descriptor, never through
a symbolic link. Lock files are kept while their domain lives (see ``lock``).

The package, one concern a module:

    _names.py      file names, parsing them, the URL (no I/O)
    _directory.py  the directory: every file operation, the directory lock
    _lock.py       the domain's lock (flock + inode re-check) and the kept lock files
    _domains.py    the managed domain table (record files and index links), and its
                   one-step calls: lock the incarnation, check its record, act
    _store.py      LibxlStore: the item operations, the sweep and the reap rule
"""

from __future__ import annotations

from ._lock import KEPT_LOCKS
from ._names import INDEX_PREFIX, LIBXL_JSON, LOCK_USERID, RECORD_SUFFIX, dir_of, item_name, record_name
from ._store import LibxlStore

__all__ = [
    "INDEX_PREFIX",
    "KEPT_LOCKS",
    "LIBXL_JSON",
    "LOCK_USERID",
    "RECORD_SUFFIX",
    "LibxlStore",
    "dir_of",
    "item_name",
    "record_name",
]
