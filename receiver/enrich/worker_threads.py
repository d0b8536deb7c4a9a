"""Blocking reads on worker threads that a caller may give up on (its deadline).

A thread given up on cannot be stopped: it reads on until its answer ends (a proxy that
drips one byte at a time, a body of megabytes). Each such thread keeps its place until
then, so a client never has more than ``places`` running, and work asked for while every
place is taken is refused at once instead of adding a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")


class Busy(Exception):
    """Every place is still taken by a read given up earlier."""


class WorkerThreads:
    def __init__(self, places: int) -> None:
        # Held by the worker thread itself, so that giving up on it frees nothing.
        self._places = threading.BoundedSemaphore(places)

    async def run(self, work: Callable[[], T], limiter: anyio.CapacityLimiter | None = None) -> T:
        """``work()`` on a worker thread (of ``limiter``'s, when given), abandoned (not
        stopped) when the caller is cancelled; raises ``Busy`` when every place is
        taken."""

        def placed() -> T:
            if not self._places.acquire(blocking=False):
                raise Busy
            try:
                return work()
            finally:
                self._places.release()

        return await anyio.to_thread.run_sync(placed, abandon_on_cancel=True, limiter=limiter)
