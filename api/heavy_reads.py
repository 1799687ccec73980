"""How many heavy admin reads (plots, stats, tick histories, reports) one replica serves at
once.

Each of them holds tens of megabytes and a CPU for a while; unbounded, a handful of
concurrent ones stalls the replica and can exhaust its memory. Beyond ``slots`` a request
waits up to ``wait_s`` for a free slot, then gets 503 with ``Retry-After`` instead of
piling up.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from api.errors import ServiceUnavailable


class HeavyReadLimit:
    def __init__(self, slots: int, wait_s: float) -> None:
        self.slots = slots
        self.wait_s = wait_s
        self._semaphore = threading.BoundedSemaphore(slots)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the slots for the block; ServiceUnavailable if none frees in time."""
        if not self._semaphore.acquire(timeout=self.wait_s):
            raise ServiceUnavailable(
                f"the server is already serving {self.slots} heavy admin reads (plots, stats, "
                "tick histories, reports); expected a retry after Retry-After seconds",
                retry_after_s=max(1, math.ceil(self.wait_s)),
            )
        try:
            yield
        finally:
            self._semaphore.release()
