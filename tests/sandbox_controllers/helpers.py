"""Helpers for the controller tests: wait for a condition, play the kubelet's part."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio

from sandbox import gc
from sandbox.cluster import Cluster
from sandbox.controllers import CONTROLLERS
from sandbox.errors import ApiError

Obj = dict[str, Any]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def until(
    cluster: Cluster, check: Callable[[], Any], *, timeout: float = 10.0, what: str = ""
) -> Any:
    """Wait until ``check()`` is truthy, re-checking after every change in the cluster."""
    changed = anyio.Event()

    def on_event(*_: object) -> None:
        changed.set()

    cluster.subscribe(on_event)
    try:
        with anyio.fail_after(timeout):
            while True:
                result = check()
                if result:
                    return result
                await changed.wait()
                changed = anyio.Event()
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what or check}") from None
    finally:
        cluster.unsubscribe(on_event)


def pods(cluster: Cluster, ns: str = "default", **labels: str) -> list[Obj]:
    found = cluster.store.list("pods", ns)
    return [
        p
        for p in found
        if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())
    ]


def pod_ip(pod: Obj, cluster: Cluster) -> str:
    return (pod.get("status") or {}).get("podIP") or cluster.ipam.allocate_pod_ip()


async def set_pod_status(cluster: Cluster, pod: Obj, *, ready: bool = True) -> Obj:
    """Write the status a kubelet would for a running pod (Ready or not)."""
    current = cluster.store.get("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
    assert current is not None, f"pod {pod['metadata']['name']} is gone"
    stamp = now()
    flag = "True" if ready else "False"
    ip = pod_ip(current, cluster)
    containers = current["spec"]["containers"]
    current["status"] = {
        "phase": "Running",
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": stamp},
            {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
            {"type": "Ready", "status": flag, "lastTransitionTime": stamp},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": stamp},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
        ],
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": stamp,
        "qosClass": "BestEffort",
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": f"sandbox://{c['image']}",
                "containerID": f"sandbox://{current['metadata']['uid']}/{c['name']}",
                "ready": ready,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": stamp}},
            }
            for c in containers
        ],
    }
    return await cluster.update("pods", current, subresource="status")


async def mark_ready(cluster: Cluster, pod: Obj) -> Obj:
    return await set_pod_status(cluster, pod, ready=True)


async def set_image(cluster: Cluster, resource: str, name: str, image: str) -> None:
    """Change the ``app`` container's image in a workload's template (``kubectl set image``)."""
    template = {"spec": {"containers": [{"name": "app", "image": image}]}}
    await cluster.patch(
        resource, "default", name, {"spec": {"template": template}}, patch_type="strategic"
    )


def is_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def container(name: str = "app", image: str = "demo/hello:1", **ports: int) -> Obj:
    c: Obj = {"name": name, "image": image}
    if ports:
        c["ports"] = [{"name": n, "containerPort": p} for n, p in ports.items()]
    return c


def taken_over_containers() -> list[Obj]:
    """A pod's containers after waylay's port takeover: the app's port is renamed
    ``wl-http`` and the agent sidecar declares ``http`` on its own port, 9900."""
    return [
        container(image="demo/hello:1", **{"wl-http": 8080}),
        container("agent", "waylay/agent:1", http=9900),
    ]


def workload(
    kind: str,
    name: str,
    replicas: int,
    containers: list[Obj],
    *,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> Obj:
    """An apps/v1 ``kind`` in ``default`` selecting ``app=<name>``; its pods carry
    ``labels`` (default just that one); ``spec`` adds or overrides spec fields."""
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels or {"app": name}},
                "spec": {"containers": containers},
            },
            **spec,
        },
    }


def deployment(name: str, replicas: int, *, image: str = "demo/hello:1", **spec: Any) -> Obj:
    return workload("Deployment", name, replicas, [container(image=image, http=8080)], **spec)


class StandInNode:
    """The kubelet's part in scheduling and deletion, and nothing else: an unscheduled
    pod is bound to the node ``sandbox``; a terminating pod is removed (grace 0).

    Set ``hold`` to keep terminating pods around, as slow-stopping containers would.
    """

    NODE = "sandbox"

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.hold = False
        self._unbound: set[tuple[str, str]] = set()
        self._terminating: set[tuple[str, str]] = set()
        self._wake = anyio.Event()
        cluster.subscribe(self._on_event)

    def _on_event(self, event: str, resource: str, obj: Obj) -> None:
        if resource != "pods" or event == "DELETED":
            return
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if obj["metadata"].get("deletionTimestamp"):
            self._terminating.add(key)
        elif not obj["spec"].get("nodeName"):
            self._unbound.add(key)
        else:
            return
        self._wake.set()

    def release(self) -> None:
        """Stop holding and finish every pending deletion."""
        self.hold = False
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self._unbound:
                ns, name = self._unbound.pop()
                bind = {"spec": {"nodeName": self.NODE}}
                with contextlib.suppress(ApiError):  # gone meanwhile
                    await self.cluster.patch("pods", ns, name, bind, patch_type="merge")
            while self._terminating and not self.hold:
                ns, name = self._terminating.pop()
                with contextlib.suppress(ApiError):  # gone meanwhile
                    await self.cluster.delete("pods", ns, name, grace_period_seconds=0)


def events(
    cluster: Cluster, kind: str, name: str, ns: str = "default"
) -> list[tuple[str, str, str]]:
    """(component, reason, message) of the Events about one object."""
    return [
        (e["source"]["component"], e["reason"], e["message"])
        for e in cluster.store.list("events", ns)
        if e["involvedObject"]["kind"] == kind and e["involvedObject"]["name"] == name
    ]


@asynccontextmanager
async def control_plane(cluster: Cluster) -> AsyncIterator[StandInNode]:
    """Run the garbage collector, a ``StandInNode`` and every controller on
    ``cluster`` until the block ends; gives the node."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(gc.run, cluster)
        node = StandInNode(cluster)
        tg.start_soon(node.run)
        for controller in CONTROLLERS:
            tg.start_soon(controller, cluster)
        yield node
        tg.cancel_scope.cancel()
