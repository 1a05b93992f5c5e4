"""Watch fan-out with a bounded history, so a watch can resume from a resourceVersion.

Every committed change is published once, in resourceVersion order. A watcher
that starts from version N gets every retained event newer than N and then the
live ones, never anything at or before N (no replay). When events newer than N
have already been dropped from the history, starting from N is ``410 Expired``:
the client must list again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

from sandbox.errors import gone

__all__ = ["Event", "WatchHub", "Watcher"]


@dataclass(frozen=True)
class Event:
    """One committed change. ``old`` is the object before a MODIFIED change."""

    type: str  # ADDED | MODIFIED | DELETED
    resource: str
    obj: dict[str, Any]
    old: dict[str, Any] | None = None

    @property
    def revision(self) -> int:
        return int(self.obj["metadata"]["resourceVersion"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"].get("namespace") or "")


class Watcher:
    """The events for one watch request, in order. Close it when done."""

    def __init__(self, hub: WatchHub, resource: str, namespace: str | None) -> None:
        self._hub = hub
        self.resource = resource
        self.namespace = namespace
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    def wants(self, event: Event) -> bool:
        return event.resource == self.resource and (
            self.namespace is None or event.namespace == self.namespace
        )

    async def next(self, timeout: float) -> Event | None:
        """The next event, or None after ``timeout`` seconds without one."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        self._hub.watchers.discard(self)


class WatchHub:
    """Publishes events to watchers and keeps the last ``capacity`` of them."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.history: deque[Event] = deque(maxlen=capacity)
        self.compacted = 0
        """Events at or below this resourceVersion are no longer retained."""
        self.watchers: set[Watcher] = set()

    def publish(self, event: Event) -> None:
        if self.history.maxlen is not None and len(self.history) == self.history.maxlen:
            self.compacted = self.history[0].revision
        self.history.append(event)
        for watcher in list(self.watchers):
            if watcher.wants(event):
                watcher.queue.put_nowait(event)

    def compact(self, revision: int) -> None:
        """Forget every event at or below ``revision`` (as etcd compaction does)."""
        while self.history and self.history[0].revision <= revision:
            self.history.popleft()
        self.compacted = max(self.compacted, revision)

    def watch(self, resource: str, namespace: str | None, since: int) -> Watcher:
        """A watcher that gets every event after ``since``; 410 when that is no longer known."""
        if since < self.compacted:
            raise gone(f"too old resource version: {since} ({self.compacted + 1})")
        watcher = Watcher(self, resource, namespace)
        for event in self.history:
            if event.revision > since and watcher.wants(event):
                watcher.queue.put_nowait(event)
        self.watchers.add(watcher)
        return watcher
