"""Owner-reference garbage collection and namespace termination.

Two in-process controllers over :class:`sandbox.cluster.Cluster` events:

- **garbage collector**: when an owner is deleted, each dependent that has no
  remaining live owner is deleted (background); a dependent that still has
  another owner just loses the dead reference. An owner carrying the
  ``foregroundDeletion`` finalizer has its dependents deleted (foreground,
  recursively) and is released once none is left.
- **namespace lifecycle**: a namespace with a ``deletionTimestamp`` has every
  object in it deleted, then is removed; a new namespace gets its ``default``
  ServiceAccount.

``run(cluster)`` runs both until cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sandbox.cluster import FOREGROUND, Cluster
from sandbox.errors import ApiError
from sandbox.resources import RESOURCES

__all__ = ["run"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]
_NAMESPACED = [r.key for r in RESOURCES if r.namespaced]
_RETRIES = 5


class _Collector:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.queue: asyncio.Queue[tuple[str, str, Obj, int]] = asyncio.Queue()

    def on_event(self, event_type: str, resource: str, obj: Obj) -> None:
        self.queue.put_nowait((event_type, resource, obj, 0))

    async def run(self) -> None:
        self.cluster.subscribe(self.on_event)
        try:
            await self._resync()
            while True:
                event_type, resource, obj, attempt = await self.queue.get()
                try:
                    await self._handle(event_type, resource, obj)
                except ApiError as exc:
                    if exc.code == 409 and attempt < _RETRIES:
                        # Raced with another writer: handle it again (handlers re-read).
                        self.queue.put_nowait((event_type, resource, obj, attempt + 1))
                    elif exc.code != 404:
                        log.warning("garbage collection of %s failed: %s", resource, exc)
                except Exception:  # one bad object must not stop the collector
                    log.exception("garbage collection of %s crashed", resource)
        finally:
            self.cluster.unsubscribe(self.on_event)

    async def _resync(self) -> None:
        """Finish work left from before a restart: terminating namespaces, dangling owners."""
        for ns in self.cluster.store.list("namespaces"):
            await self._handle("MODIFIED", "namespaces", ns)

    async def _handle(self, event_type: str, resource: str, obj: Obj) -> None:
        meta = obj["metadata"]
        if event_type == "DELETED":
            await self._collect_dependents(meta["uid"])
            await self._release_owners(meta.get("ownerReferences") or [])
            if resource != "namespaces" and meta.get("namespace"):
                await self._finish_namespace(meta["namespace"])
            return
        if resource == "namespaces":
            if meta.get("deletionTimestamp"):
                await self._terminate_namespace(meta["name"])
            elif event_type == "ADDED":
                await self._default_service_account(meta["name"])
            return
        if meta.get("deletionTimestamp") and FOREGROUND in (meta.get("finalizers") or []):
            await self._foreground(resource, obj)

    async def _collect_dependents(self, uid: str) -> None:
        store = self.cluster.store
        for resource, dependent in store.owned_by(uid):
            dmeta = dependent["metadata"]
            refs = dmeta.get("ownerReferences") or []
            alive = [r for r in refs if r.get("uid") != uid and store.by_uid(r.get("uid", ""))]
            if alive:
                dmeta["ownerReferences"] = alive
                await self.cluster.update(resource, dependent)
            else:
                await self.cluster.delete(
                    resource, dmeta.get("namespace"), dmeta["name"], propagation="Background"
                )

    async def _foreground(self, resource: str, obj: Obj) -> None:
        meta = obj["metadata"]
        dependents = self.cluster.store.owned_by(meta["uid"])
        for dep_resource, dependent in dependents:
            dmeta = dependent["metadata"]
            if not dmeta.get("deletionTimestamp"):
                await self.cluster.delete(
                    dep_resource, dmeta.get("namespace"), dmeta["name"], propagation="Foreground"
                )
        blocking = [
            d
            for _, d in self.cluster.store.owned_by(meta["uid"])
            if any(
                r.get("uid") == meta["uid"] and r.get("blockOwnerDeletion")
                for r in d["metadata"].get("ownerReferences") or []
            )
        ]
        if not blocking:
            await self._drop_finalizer(resource, meta.get("namespace"), meta["name"])

    async def _release_owners(self, refs: list[Obj]) -> None:
        """A dependent went away: an owner waiting in foreground deletion may now go."""
        for ref in refs:
            found = self.cluster.store.by_uid(ref.get("uid", ""))
            if found is None:
                continue
            resource, owner = found
            ometa = owner["metadata"]
            if ometa.get("deletionTimestamp") and FOREGROUND in (ometa.get("finalizers") or []):
                await self._foreground(resource, owner)

    async def _drop_finalizer(self, resource: str, namespace: str | None, name: str) -> None:
        current = self.cluster.store.get(resource, namespace, name)
        if current is None:
            return
        finalizers = current["metadata"].get("finalizers") or []
        current["metadata"]["finalizers"] = [f for f in finalizers if f != FOREGROUND]
        await self.cluster.update(resource, current)

    async def _terminate_namespace(self, name: str) -> None:
        for resource in _NAMESPACED:
            for obj in self.cluster.store.list(resource, name):
                if not obj["metadata"].get("deletionTimestamp"):
                    await self.cluster.delete(resource, name, obj["metadata"]["name"])
        await self._finish_namespace(name)

    async def _finish_namespace(self, name: str) -> None:
        ns = self.cluster.store.get("namespaces", None, name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        if any(self.cluster.store.count(resource, name) for resource in _NAMESPACED):
            return
        self.cluster.finalize_namespace(name)

    async def _default_service_account(self, namespace: str) -> None:
        if self.cluster.store.get("serviceaccounts", namespace, "default") is not None:
            return
        try:
            await self.cluster.create(
                "serviceaccounts",
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
                namespace=namespace,
            )
        except ApiError as exc:
            if exc.code not in (403, 404, 409):
                raise


async def run(cluster: Cluster) -> None:
    """Garbage-collect dependents and terminate namespaces until cancelled."""
    await _Collector(cluster).run()
