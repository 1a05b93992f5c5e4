"""The loop every controller runs: events in, level-triggered reconciles out.

A controller subscribes to the cluster's change feed, maps each event to the
keys (namespace, name) of the objects it manages, and reconciles each key from
the current state in the store, never from the event. Nothing polls: a
reconcile that must look again later (minReadySeconds, progress deadlines)
asks for it by returning a delay. A 409 (a write raced with another writer)
requeues the key quickly; any other failure is logged and retried with
exponential back-off, and never stops the loop or the other keys.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

from sandbox.errors import ApiError
from sandbox.kubelet_api import StoreAPI as StoreLike
from sandbox.kubelet_events import EventRecorder

from ._meta import Obj
from ._workqueue import WorkQueue

if TYPE_CHECKING:
    from sandbox.kubelet_api import ClusterAPI

__all__ = ["ClusterLike", "Controller", "Key", "Record", "RetryLater", "StoreLike"]

Key = tuple[str, str]
"""(namespace, name) of the object a controller reconciles."""

log = logging.getLogger("sandbox.controllers")


Record = Callable[..., None]
"""``Controller.event``: record an Event (obj, reason, message, warning=False)."""


class RetryLater(Exception):
    """A reconcile could not finish for a known reason; retry with back-off, no traceback."""


class ClusterLike(Protocol):
    """The part of ``sandbox.cluster.Cluster`` (docs/CONTRACTS.md) controllers use."""

    @property
    def store(self) -> StoreLike: ...

    async def create(self, resource: str, obj: Obj, *, namespace: str | None = None) -> Obj: ...

    async def update(self, resource: str, obj: Obj, *, subresource: str | None = None) -> Obj: ...

    async def delete(self, resource: str, namespace: str, name: str) -> Obj: ...

    def subscribe(self, callback: Callable[[str, str, Obj], None]) -> None: ...


class Controller(ABC):
    """One controller: a work queue, a few workers and a ``reconcile`` per key."""

    name: ClassVar[str]
    component: ClassVar[str]
    """The ``source.component`` of the Events it records (``deployment-controller``)."""
    workers: ClassVar[int] = 2
    primary: ClassVar[str]
    """The resource whose objects are the keys (``deployments.apps``, ``services``)."""

    def __init__(self, cluster: ClusterLike) -> None:
        self.cluster = cluster
        self.store = cluster.store
        self.queue: WorkQueue[Key] = WorkQueue()
        self._events = EventRecorder(cast("ClusterAPI", cluster), host="")
        self._running = False

    def event(self, obj: Obj, reason: str, message: str, *, warning: bool = False) -> None:
        """Record an Event about ``obj`` (``kubectl describe`` shows them); never blocks."""
        if self._running:
            kind = "Warning" if warning else "Normal"
            self._events.emit(obj, kind, reason, message, component=self.component)

    @abstractmethod
    def keys_for(self, event: str, resource: str, obj: Obj) -> Iterable[Key]:
        """The keys an event concerns (called on the loop; must be quick)."""

    @abstractmethod
    async def reconcile(self, key: Key) -> float | None:
        """Bring ``key`` to its desired state; return seconds to look again, or None."""

    async def run(self) -> None:
        """Run until cancelled."""
        self._running = True
        self._events.start()
        self.cluster.subscribe(self._on_event)
        for obj in self.store.list(self.primary):
            meta = obj.get("metadata") or {}
            self.queue.add((meta.get("namespace") or "", meta.get("name") or ""))
        try:
            async with asyncio.TaskGroup() as tg:
                for _ in range(self.workers):
                    tg.create_task(self._worker())
        finally:
            self._running = False
            self.queue.close()
            unsubscribe = getattr(self.cluster, "unsubscribe", None)
            if unsubscribe is not None:
                unsubscribe(self._on_event)
            await self._events.close()

    def _on_event(self, event: str, resource: str, obj: dict[str, Any]) -> None:
        if not self._running:
            return
        try:
            for key in self.keys_for(event, resource, obj):
                self.queue.add(key)
        except Exception:
            log.exception("%s: could not map %s event on %s", self.name, event, resource)

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                again = await self.reconcile(key)
            except ApiError as exc:
                delay = self.queue.add_rate_limited(key)
                # 409: raced with another writer; 404: the object went meanwhile.
                level = logging.DEBUG if exc.code in (404, 409) else logging.WARNING
                log.log(level, "%s %s/%s: %r; retry in %.3fs", self.name, *key, exc, delay)
            except RetryLater as exc:
                delay = self.queue.add_rate_limited(key)
                log.info("%s %s/%s: %s; retry in %.3fs", self.name, *key, exc, delay)
            except Exception:
                delay = self.queue.add_rate_limited(key)
                log.exception("%s %s/%s failed; retry in %.3fs", self.name, *key, delay)
            else:
                self.queue.forget(key)
                if again is not None:
                    self.queue.add_after(key, again)
            finally:
                self.queue.done(key)
