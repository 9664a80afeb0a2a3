"""The libxl store after a reboot: an item file changed before the boot
started is of an earlier boot, and reap collects it only if no writer of
this boot replaced it meanwhile."""

from __future__ import annotations

import os
import time
import uuid as _uuid
from pathlib import Path

from domdata import Incarnation
from domdata._boot import Boot
from domdata.stores.base import StoreOptions
from domdata.stores.libxl import LOCK_USERID, LibxlStore, item_name
from tests.libxl.test_lock import libxl_lock, libxl_unlock


def test_a_file_libxl_renamed_over_an_earlier_boots_one_after_reap_read_it_is_kept(tmp_path: Path) -> None:
    directory = tmp_path / "xen"
    directory.mkdir()
    store = LibxlStore(f"libxl://{directory}", StoreOptions())
    incarnation = Incarnation(3, str(_uuid.uuid4()))
    try:
        for userid in ("b", "c"):
            store.put(incarnation, userid, b"old")
        started = int(time.time()) - 60
        for userid in ("b", "c"):
            os.utime(directory / item_name("d", incarnation, userid), (started - 3600, started - 3600))
        store.follow_boot(Boot(str(_uuid.uuid4()), started))
        # What reap read before locking the incarnation.
        assert [item.userid for item in store.earlier_boot()] == ["b", "c"]
        assert store.get(incarnation, "b") is None

        # libxl, a writer of this boot, replaces b under the domain's lock first.
        lock_path = str(directory / item_name("l", incarnation, LOCK_USERID))
        fd = libxl_lock(lock_path)
        (directory / item_name("n", incarnation, "b")).write_bytes(b"fresh")
        os.rename(directory / item_name("n", incarnation, "b"), directory / item_name("d", incarnation, "b"))
        libxl_unlock(lock_path, fd)

        lock = store.lock(incarnation.domid, incarnation.uuid, 5.0)
        try:
            assert store.drop_earlier_boot([incarnation]) == 1
        finally:
            lock.release()
        assert store.get(incarnation, "b") == b"fresh"
        assert not (directory / item_name("d", incarnation, "c")).exists()
        assert store.earlier_boot() == []
    finally:
        store.close()
