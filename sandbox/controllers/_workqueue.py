"""A keyed work queue with the semantics of client-go's ``workqueue``.

- A key waiting in the queue is held once, however often it is added.
- A key being processed is never handed to a second worker; adding it while it
  is processed marks it dirty, and it is queued again when ``done`` is called.
- ``add_after`` queues a key later (requeue after minReadySeconds, progress
  deadlines); ``add_rate_limited`` does so with per-key exponential back-off,
  reset by ``forget`` after a successful reconcile.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["WorkQueue"]

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """Deduplicating queue of keys for a pool of asyncio workers."""

    def __init__(self, *, base_delay: float = 0.005, max_delay: float = 10.0) -> None:
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._wake = asyncio.Event()
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._closed = False

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: K) -> None:
        if self._closed or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._wake.set()

    def add_after(self, key: K, delay: float) -> None:
        """Add ``key`` once ``delay`` seconds have passed."""
        if self._closed:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._timers.discard(handle)
            self.add(key)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def add_rate_limited(self, key: K) -> float:
        """Add ``key`` after its back-off (doubling per failure); returns the delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay: float = min(self._base_delay * 2.0**failures, self._max_delay)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """Reset ``key``'s back-off."""
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> K:
        """Wait for a key and mark it as being processed."""
        while not self._queue:
            self._wake.clear()
            await self._wake.wait()
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        if self._queue:
            self._wake.set()
        return key

    def done(self, key: K) -> None:
        """Processing of ``key`` finished; queue it again if it was added meanwhile."""
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake.set()

    def close(self) -> None:
        """Drop pending timers and refuse new keys."""
        self._closed = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
