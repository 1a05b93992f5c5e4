"""The sandbox's kubelet: every pod runs as local processes on its own loopback IP.

The kubelet subscribes to the cluster. A new pod is "scheduled" onto the one
node (``spec.nodeName``, a ``Scheduled`` event), gets an address from the
sandbox's IPAM, and a ``PodWorker`` runs its containers. Deleting a pod
with a grace period (the API server sets ``deletionTimestamp``) stops its
containers (SIGTERM, the grace period, SIGKILL) and then the kubelet removes
the object; a pod removed outright is stopped the same way.

``logs()`` and ``portforward()`` are what the API server routes ``pods/log``
and ``pods/portforward`` to. ``stop()`` kills every container and leaves no
process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator, Coroutine, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from sandbox.errors import ApiError, bad_request, not_found
from sandbox.ipam import Ipam
from sandbox.kubelet_api import ClusterAPI, Obj
from sandbox.kubelet_container import ContainerRuntime, Timings
from sandbox.kubelet_events import EventRecorder
from sandbox.kubelet_kubeconfig import ApiAccess
from sandbox.kubelet_logs import read_log
from sandbox.kubelet_pod import NodeInfo, PodWorker
from sandbox.portforward import serve_portforward
from sandbox.services import ServiceProxy
from sandbox.tasks import cancel_and_wait

__all__ = ["ApiAccess", "Kubelet", "KubeletConfig", "LogStream", "Timings"]

log = logging.getLogger(__name__)

_TERMINAL = ("Succeeded", "Failed")


@dataclass(frozen=True)
class KubeletConfig:
    state_dir: Path
    """Per-pod working directories, kubeconfigs and container logs live here."""
    api: ApiAccess | None = None
    """How in-pod code reaches the API (``KUBECONFIG``); ``None``: no API access."""
    node_name: str = "sandbox"
    host_ip: str = "127.0.0.1"
    timings: Timings = field(default_factory=Timings)
    shutdown_grace: float = 2.0
    """On ``stop()``: SIGTERM, this long, then SIGKILL."""
    service_proxy: bool = True
    """Run the node's Service proxy (kube-proxy) with the kubelet."""


class LogStream:
    """The bytes of ``Kubelet.logs``: iterate it (``async for``) or ``await`` it first.

    Validation (pod, container, previous run) happens when ``logs()`` is called,
    so a bad request raises ``ApiError`` before any byte is sent.
    """

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks

    def __await__(self) -> Generator[Any, None, LogStream]:
        return self._ready().__await__()

    async def _ready(self) -> LogStream:
        return self


class Kubelet:
    """Runs the pods of one sandbox."""

    def __init__(self, cluster: ClusterAPI, ipam: Ipam, config: KubeletConfig) -> None:
        self._cluster = cluster
        self._ipam = ipam
        self.config = config
        self._events = EventRecorder(cluster, host=config.node_name)
        self._node = NodeInfo(config.node_name, config.host_ip, config.api, config.timings)
        self.workers: dict[str, PodWorker] = {}
        """By pod uid."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._stopping = False
        self.proxy: ServiceProxy | None = (
            ServiceProxy(cluster, ipam, events=self._events) if config.service_proxy else None
        )
        """The node's kube-proxy: Service ClusterIPs and LoadBalancer addresses."""

    # ----------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Run every pod already in the store, then follow changes."""
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        self._events.start()
        self._cluster.subscribe(self._on_change)
        self._started = True
        for pod in self._cluster.store.list("pods"):
            self._on_change("ADDED", "pods", pod)
        if self.proxy is not None:
            await self.proxy.start()

    async def stop(self) -> None:
        """Stop every container (SIGTERM, a short grace, SIGKILL); no process survives."""
        self._stopping = True
        unsubscribe = getattr(self._cluster, "unsubscribe", None)
        if unsubscribe is not None:
            unsubscribe(self._on_change)
        if self.proxy is not None:
            await self.proxy.stop()
        workers = list(self.workers.values())
        await asyncio.gather(
            *(worker.stop(self.config.shutdown_grace) for worker in workers),
            return_exceptions=True,
        )
        for worker in workers:
            worker.kill()
            await worker.close()
        await cancel_and_wait(self._tasks)
        await self._events.close()
        self.workers.clear()

    async def flush_events(self) -> None:
        await self._events.flush()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------- changes

    def _on_change(self, event: str, resource: str, obj: Obj) -> None:
        if resource != "pods" or self._stopping:
            return
        meta = obj["metadata"]
        uid = str(meta.get("uid", ""))
        node = (obj.get("spec") or {}).get("nodeName")
        if node and node != self.config.node_name:
            return
        worker = self.workers.get(uid)
        if event == "DELETED":
            if worker is not None and not worker.removing:
                self._spawn(self._remove(worker, deleted=True), f"remove {meta['name']}")
            return
        if worker is None:
            if meta.get("deletionTimestamp"):
                self._spawn(self._finish_delete(obj), f"delete {meta['name']}")
                return
            if (obj.get("status") or {}).get("phase") in _TERMINAL:
                return
            self._admit(obj)
            return
        worker.pod = obj
        if meta.get("deletionTimestamp") and not worker.terminating:
            worker.terminating = True
            self._spawn(self._remove(worker, deleted=False), f"terminate {meta['name']}")

    def _admit(self, pod: Obj) -> None:
        meta = pod["metadata"]
        namespace, name = str(meta.get("namespace") or "default"), str(meta["name"])
        previous = (pod.get("status") or {}).get("podIP")
        if previous and self._ipam.pods.contains(previous) and self._ipam.pods.reserve(previous):
            pod_ip = str(previous)
        else:
            pod_ip = self._ipam.allocate_pod_ip()
        workdir = self.config.state_dir / "pods" / f"{namespace}_{name}_{meta['uid']}"
        worker = PodWorker(
            pod,
            cluster=self._cluster,
            events=self._events,
            node=self._node,
            pod_ip=pod_ip,
            workdir=workdir,
        )
        self.workers[worker.uid] = worker
        if not (pod.get("spec") or {}).get("nodeName"):
            self._events.emit(
                pod,
                "Normal",
                "Scheduled",
                f"Successfully assigned {namespace}/{name} to {self.config.node_name}",
                component="default-scheduler",
            )
            self._spawn(self._bind(namespace, name), f"bind {name}")
        worker.start()

    async def _bind(self, namespace: str, name: str) -> None:
        with contextlib.suppress(ApiError):
            await self._cluster.patch(
                "pods",
                namespace,
                name,
                {"spec": {"nodeName": self.config.node_name}},
                patch_type="merge",
            )

    async def _remove(self, worker: PodWorker, *, deleted: bool) -> None:
        """Graceful termination, then release everything the pod held."""
        worker.removing = True
        meta = worker.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = worker.pod["spec"].get("terminationGracePeriodSeconds", 30)
        await worker.stop(float(grace))
        if not deleted:
            await worker.write_status()
            await self._finish_delete(worker.pod)
        worker.gone = True
        await worker.close()
        self.workers.pop(worker.uid, None)
        self._ipam.release_pod_ip(worker.pod_ip)
        self._events.forget(worker.uid)
        shutil.rmtree(worker.workdir, ignore_errors=True)

    async def _finish_delete(self, pod: Obj) -> None:
        """Remove the object after its containers stopped (DELETE with grace 0)."""
        meta = pod["metadata"]
        try:
            await self._cluster.delete(
                "pods", meta.get("namespace"), meta["name"], grace_period_seconds=0
            )
        except ApiError as exc:
            if exc.code != 404:
                log.warning("pod %s not removed: %s", meta["name"], exc)

    # ---------------------------------------------------------------- reads

    def _worker(self, namespace: str, pod: str) -> PodWorker:
        obj = self._cluster.store.get("pods", namespace, pod)
        if obj is None:
            raise not_found("pods", pod)
        worker = self.workers.get(str(obj["metadata"].get("uid")))
        if worker is None:
            raise bad_request(f'pod "{pod}" is not running on node {self.config.node_name}')
        return worker

    def _container(self, worker: PodWorker, container: str | None) -> ContainerRuntime:
        every = [*worker.init_containers, *worker.containers]
        if not container:
            if len(worker.containers) == 1:
                return worker.containers[0]
            names = " ".join(c.name for c in worker.containers)
            raise bad_request(
                f"a container name must be specified for pod {worker.name}, "
                f"choose one of: [{names}]"
            )
        for runtime in every:
            if runtime.name == container:
                return runtime
        raise bad_request(f"container {container} is not valid for pod {worker.name}")

    def logs(
        self,
        namespace: str,
        pod: str,
        container: str | None,
        *,
        follow: bool = False,
        tail_lines: int | None = None,
        previous: bool = False,
    ) -> LogStream:
        """A container's log (``kubectl logs``); raises ``ApiError`` at once when invalid."""
        runtime = self._container(self._worker(namespace, pod), container)
        run = runtime.runs - (2 if previous else 1)
        if run < 0:
            if previous:
                raise bad_request(
                    f'previous terminated container "{runtime.name}" in pod "{pod}" not found'
                )
            reason = (runtime.status.state.get("waiting") or {}).get("reason", "ContainerCreating")
            raise bad_request(
                f'container "{runtime.name}" in pod "{pod}" is waiting to start: {reason}'
            )
        live = runtime.current_log if not previous else None
        return LogStream(
            read_log(runtime.log_path(run), live=live, follow=follow, tail_lines=tail_lines)
        )

    async def portforward(self, request: web.Request, pod: dict[str, Any]) -> web.StreamResponse:
        """Serve ``pods/portforward`` for ``pod`` (the API server has authorized it)."""
        meta = pod["metadata"]
        worker = self.workers.get(str(meta.get("uid")))
        if worker is None:
            raise bad_request(
                f'unable to upgrade connection: pod "{meta["name"]}" is not running on node '
                f"{self.config.node_name}"
            )
        if (pod.get("status") or {}).get("phase") in _TERMINAL:
            raise bad_request(
                "unable to upgrade connection: cannot port-forward to a pod that has "
                "completed (phase " + str(pod["status"]["phase"]) + ")"
            )
        return await serve_portforward(
            request, pod_ip=worker.pod_ip, pod_name=worker.name, pod_uid=worker.uid
        )
