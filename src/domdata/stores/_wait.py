"""The one way a store waits for a lock it cannot take at once.

Neither ``F_OFD_SETLKW`` nor ``flock`` can time out, so a waiter tries again
with a growing pause (0.5 ms doubling to 20 ms): a lock released after a
short read-modify-write is taken within a millisecond or two, a long wait
costs about fifty tries a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable

FIRST_PAUSE = 0.0005
LAST_PAUSE = 0.02


def wait_for(attempt: Callable[[], bool], timeout: float) -> bool:
    """Call *attempt* until it returns True or *timeout* seconds have passed
    since the first call; whether it succeeded. The first try does not sleep."""
    if attempt():
        return True
    deadline = time.monotonic() + timeout
    pause = FIRST_PAUSE
    while True:
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        if attempt():
            return True
        if time.monotonic() >= deadline:
            return False
        pause = min(pause * 2, LAST_PAUSE)
