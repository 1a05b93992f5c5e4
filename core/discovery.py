"""Live discovery: namespaces and workloads of one context, kept fresh by watches.

``Discovery`` keeps one watch-backed cache per kind and scope (all namespaces
when the user may list them cluster-wide, else one namespace). Each cache is
fed by a thread running ``core.kube.Watcher`` (list, then watch from the
list's resourceVersion, resume after stream ends, relist on 410), so reads
are answered from memory and nothing polls. Change notices reach the event
loop through anyio's thread portal.

RBAC-limited users get a narrower view instead of a failure: when namespaces
or cluster-wide lists are forbidden, discovery falls back to the kubeconfig
context's namespace. Kinds that are merely optional for the view (pods,
services) are treated as empty when forbidden.

    async with await Discovery.connect() as d:
        print(await d.workloads(None))
        async for change in d.changes():
            ...
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import anyio.from_thread
import anyio.lowlevel

from core.broadcast import Broadcast
from core.errors import RbacDenied, WaylayError
from core.inventory import build_workloads
from core.kube import Kube
from core.models import ContextInfo, NamespaceInfo, WorkloadInfo
from core.protocol import InterceptInfo

__all__ = ["Change", "Discovery", "snapshot_workloads"]

SYNC_TIMEOUT = 30.0
"""Seconds to wait for a cache's first list."""

_KINDS: dict[str, tuple[str, str]] = {
    "deployments": ("apps/v1", "Deployment"),
    "replicasets": ("apps/v1", "ReplicaSet"),
    "statefulsets": ("apps/v1", "StatefulSet"),
    "services": ("v1", "Service"),
    "pods": ("v1", "Pod"),
}
_REQUIRED = ("deployments", "replicasets", "statefulsets")


@dataclass(frozen=True)
class Change:
    """Something the views depend on changed; read them again."""

    kind: Literal["workloads", "namespaces", "intercepts", "error"]
    namespace: str | None = None
    """The namespace it happened in, when known."""
    error: WaylayError | None = None
    """For ``error``: a watch failed and is retrying (e.g. the cluster went away)."""


class _Cache:
    """The objects of one kind in one scope, kept current by a watch thread."""

    def __init__(
        self,
        kube: Kube,
        plural: str,
        namespace: str | None,
        on_event: Callable[[_Cache, dict[str, Any] | None, WaylayError | None], None],
    ) -> None:
        api_version, kind = _KINDS.get(plural, ("v1", "Namespace"))
        self.plural = plural
        self.namespace = namespace
        self.synced = threading.Event()
        self.error: WaylayError | None = None
        self._objects: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._on_event = on_event
        self._watcher = kube.watch(api_version, kind, namespace, timeout_seconds=240)
        self._thread = threading.Thread(
            target=self._run, name=f"waylay-watch-{plural}-{namespace or 'all'}", daemon=True
        )
        self._thread.start()

    @staticmethod
    def _key(obj: dict[str, Any]) -> str:
        meta = obj.get("metadata") or {}
        return f"{meta.get('namespace', '')}/{meta.get('name', '')}"

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                for event in self._watcher:
                    with self._lock:
                        if event.type == "RELISTED":
                            self._objects = {self._key(o): o for o in event.objects}
                        elif event.type == "DELETED":
                            self._objects.pop(self._key(event.object), None)
                        else:
                            self._objects[self._key(event.object)] = event.object
                    self.error = None
                    self.synced.set()
                    backoff = 0.5
                    self._on_event(self, event.object or None, None)
            except WaylayError as exc:
                if self._stop.is_set():
                    return
                self.error = exc
                self.synced.set()
                self._on_event(self, None, exc)
                if isinstance(exc, RbacDenied):
                    return  # permissions do not come back by retrying
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 15.0)

    def objects(self) -> list[dict[str, Any]]:
        """A snapshot; empty when the kind is forbidden."""
        with self._lock:
            return list(self._objects.values())

    @property
    def forbidden(self) -> bool:
        return isinstance(self.error, RbacDenied)

    def stop(self) -> None:
        self._stop.set()
        self._watcher.stop()


class Discovery:
    """The live view of one kubeconfig context."""

    def __init__(self, kube: Kube, token: anyio.lowlevel.EventLoopToken) -> None:
        self.kube = kube
        self._token = token
        self._caches: dict[tuple[str, str | None], _Cache] = {}
        self._cluster_wide: bool | None = None
        """None: not tried yet; False: forbidden, use per-namespace caches."""
        self._changes: Broadcast[Change] = Broadcast(256)
        self._intercepts: list[InterceptInfo] = []
        self._lock = anyio.Lock()
        self._closed = False

    @classmethod
    async def connect(cls, context: str | None = None, kubeconfig: str | None = None) -> Discovery:
        """Open ``context`` (default: current) and check the cluster answers."""
        kube = await anyio.to_thread.run_sync(Kube.from_kubeconfig, kubeconfig, context)
        try:
            await anyio.to_thread.run_sync(kube.version, abandon_on_cancel=True)
        except BaseException:
            kube.close()
            raise
        return cls(kube, anyio.lowlevel.current_token())

    @property
    def context(self) -> ContextInfo:
        return self.kube.context

    async def __aenter__(self) -> Discovery:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        for cache in self._caches.values():
            cache.stop()
        self._caches.clear()
        self._changes.close()
        self.kube.close()

    # ------------------------------------------------------------------ views

    async def namespaces(self) -> list[NamespaceInfo]:
        """Namespaces the user may see, with workload counts where known."""
        cache = await self._cache("namespaces", None, required=False)
        names = (
            {o["metadata"]["name"] for o in cache.objects()}
            if not cache.forbidden
            else {self.context.namespace}
        )
        counts: dict[str, int] = {}
        scope = await self._workload_scope(None)
        for w in self._build(scope):
            counts[w.namespace] = counts.get(w.namespace, 0) + 1
        if cache.forbidden:
            names |= {ns for (_, ns) in self._caches if ns}
        return [NamespaceInfo(name=n, workload_count=counts.get(n, 0)) for n in sorted(names)]

    async def workloads(self, namespace: str | None = None) -> list[WorkloadInfo]:
        """Workloads of ``namespace``, or of every namespace the user may see."""
        scope = await self._workload_scope(namespace)
        return self._build(scope, namespace)

    def set_intercepts(self, intercepts: Iterable[InterceptInfo]) -> None:
        """Merge the manager's intercepts into the views (from the session)."""
        self._intercepts = list(intercepts)
        self._notify(Change("intercepts"))

    async def changes(self) -> AsyncIterator[Change]:
        """Change notices, as they happen, until ``aclose``."""
        async for change in self._changes.subscribe():
            yield change

    # -------------------------------------------------------------- internals

    def _build(self, scope: str | None, namespace: str | None = None) -> list[WorkloadInfo]:
        objects = {p: self._caches[(p, scope)].objects() for p in _KINDS}
        return build_workloads(
            deployments=objects["deployments"],
            replicasets=objects["replicasets"],
            statefulsets=objects["statefulsets"],
            services=objects["services"],
            pods=objects["pods"],
            intercepts=self._intercepts,
            namespace=namespace,
        )

    async def _workload_scope(self, namespace: str | None) -> str | None:
        """Start (or reuse) the caches serving ``namespace``; returns their scope."""
        if self._cluster_wide is not False and await self._start_scope(
            None, strict=namespace is not None
        ):
            return None
        scope = namespace or self.context.namespace
        await self._start_scope(scope, strict=True)
        return scope

    async def _start_scope(self, scope: str | None, *, strict: bool) -> bool:
        caches = [await self._cache(p, scope, required=p in _REQUIRED) for p in _KINDS]
        denied = [c for c in caches if c.forbidden and c.plural in _REQUIRED]
        if scope is None:
            self._cluster_wide = not denied
            if denied:
                for p in _KINDS:
                    self._caches.pop((p, None)).stop()
                return False
            return True
        if denied and strict:
            assert denied[0].error is not None
            raise denied[0].error
        return not denied

    async def _cache(self, plural: str, scope: str | None, *, required: bool) -> _Cache:
        async with self._lock:
            cache = self._caches.get((plural, scope))
            if cache is None:
                cache = _Cache(self.kube, plural, scope, self._on_event)
                self._caches[(plural, scope)] = cache
        with anyio.fail_after(SYNC_TIMEOUT):
            if not cache.synced.is_set():
                await anyio.to_thread.run_sync(
                    cache.synced.wait, SYNC_TIMEOUT, abandon_on_cancel=True
                )
        if cache.error is not None and not cache.forbidden and required:
            raise cache.error
        return cache

    def _on_event(
        self, cache: _Cache, obj: dict[str, Any] | None, error: WaylayError | None
    ) -> None:
        """Called on a watch thread: hand the notice to the event loop."""
        if self._closed:
            return
        if error is not None:
            change = Change("error", cache.namespace, error)
        else:
            ns = ((obj or {}).get("metadata") or {}).get("namespace") or cache.namespace
            kind: Literal["workloads", "namespaces"] = (
                "namespaces" if cache.plural == "namespaces" else "workloads"
            )
            change = Change(kind, ns)
        with contextlib.suppress(RuntimeError):
            anyio.from_thread.run_sync(self._notify, change, token=self._token)

    def _notify(self, change: Change) -> None:
        self._changes.publish(change)


def snapshot_workloads(kube: Kube, namespace: str) -> list[WorkloadInfo]:
    """One-shot (blocking) view of a namespace's workloads, for callers without watches."""
    objects = {}
    for plural, (api_version, kind) in _KINDS.items():
        try:
            objects[plural], _ = kube.list(api_version, kind, namespace)
        except RbacDenied:
            if plural in _REQUIRED:
                raise
            objects[plural] = []
    return build_workloads(
        deployments=objects["deployments"],
        replicasets=objects["replicasets"],
        statefulsets=objects["statefulsets"],
        services=objects["services"],
        pods=objects["pods"],
        namespace=namespace,
    )
