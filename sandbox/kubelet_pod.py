"""One pod on the node: its address, its containers, and the status it reports.

A ``PodWorker`` gives the pod its loopback IP, writes the service-account
kubeconfig, runs the init containers one after another and then every
container at once, and keeps ``status`` in the API in step with them (writes
are coalesced: a burst of changes is one status update).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.errors import ApiError
from sandbox.kubelet_api import ClusterAPI, Obj
from sandbox.kubelet_container import ContainerRuntime, Timings
from sandbox.kubelet_env import container_env
from sandbox.kubelet_events import EventRecorder, now_rfc3339
from sandbox.kubelet_kubeconfig import ApiAccess, write_kubeconfig
from sandbox.kubelet_status import pod_status
from sandbox.tasks import cancel_and_wait

__all__ = ["PodWorker"]

log = logging.getLogger(__name__)

# What a pod needs is mounted by no one: processes share the host filesystem.
# The service-account token volume is served through $KUBECONFIG instead.
_TOKEN_VOLUME_PREFIX = "kube-api-access-"
_PASSTHROUGH_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")


@dataclass(frozen=True)
class NodeInfo:
    name: str
    host_ip: str
    api: ApiAccess | None
    timings: Timings


class PodWorker:
    """Runs one pod (one ``metadata.uid``)."""

    def __init__(
        self,
        pod: Obj,
        *,
        cluster: ClusterAPI,
        events: EventRecorder,
        node: NodeInfo,
        pod_ip: str,
        workdir: Path,
    ) -> None:
        self.pod = pod
        self.uid = str(pod["metadata"]["uid"])
        self.namespace = str(pod["metadata"].get("namespace") or "default")
        self.name = str(pod["metadata"]["name"])
        self.pod_ip = pod_ip
        self.workdir = workdir
        self.timings = node.timings
        self._cluster = cluster
        self._events = events
        self._node = node
        self._start_time = now_rfc3339()
        self._transitions: dict[str, str] = {}
        self._dirty = asyncio.Event()
        self._init_done = not (pod["spec"].get("initContainers") or [])
        self.init_containers = [
            ContainerRuntime(spec, self, init=True)
            for spec in pod["spec"].get("initContainers") or []
        ]
        self.containers = [ContainerRuntime(spec, self) for spec in pod["spec"]["containers"]]
        if self.init_containers:
            for runtime in self.containers:
                runtime.status.state = {"waiting": {"reason": "PodInitializing"}}
        self._tasks: list[asyncio.Task[None]] = []
        self._kubeconfig: Path | None = None
        self.terminating = False
        self.removing = False
        self.gone = False

    # ---------------------------------------------------------- PodContext

    def env_for(self, container: dict[str, Any]) -> dict[str, str]:
        base = {key: os.environ[key] for key in _PASSTHROUGH_ENV if key in os.environ}
        base.update(
            {
                "HOSTNAME": self.name,
                "HOME": str(self.workdir),
                "PYTHONUNBUFFERED": "1",
                "POD_IP": self.pod_ip,
                "WAYLAY_POD_IP": self.pod_ip,
                "POD_NAME": self.name,
                "POD_NAMESPACE": self.namespace,
            }
        )
        if self._node.api is not None:
            base["KUBERNETES_SERVICE_HOST"] = self._node.api.host
            base["KUBERNETES_SERVICE_PORT"] = str(self._node.api.port)
            base["KUBERNETES_SERVICE_PORT_HTTPS"] = str(self._node.api.port)
            if self._kubeconfig is not None:
                base["KUBECONFIG"] = str(self._kubeconfig)
        store = self._cluster.store
        return container_env(
            self.pod,
            container,
            lookup=lambda resource, namespace, name: store.get(resource, namespace, name),
            pod_ip=self.pod_ip,
            base=base,
            services=store.list("services", self.namespace),
        )

    def emit(self, type_: str, reason: str, message: str, *, field_path: str = "") -> None:
        self._events.emit(self.pod, type_, reason, message, field_path=field_path)

    def changed(self) -> None:
        self._dirty.set()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        spec = self.pod["spec"]
        automount = spec.get("automountServiceAccountToken", True) is not False
        if self._node.api is not None and automount:
            account = str(spec.get("serviceAccountName") or "default")
            self._kubeconfig = write_kubeconfig(
                self.workdir / "kubeconfig", self._node.api, self.namespace, account
            )
        for volume in spec.get("volumes") or []:
            name = str(volume.get("name", ""))
            if name.startswith(_TOKEN_VOLUME_PREFIX):
                continue
            kind = next((key for key in volume if key != "name"), "unknown")
            self.emit(
                "Warning",
                "VolumeNotSupported",
                f'volume "{name}" ({kind}) is accepted but not mounted: sandbox containers '
                "are local processes that share the host's filesystem",
            )
        self._tasks.append(asyncio.create_task(self._sync_status(), name=f"status {self.name}"))
        self._tasks.append(asyncio.create_task(self._run(), name=f"pod {self.name}"))
        self.changed()

    async def _run(self) -> None:
        for init in self.init_containers:
            await init.run()
            if init.status.exit_code != 0 or self.terminating:
                return  # restartPolicy Never and it failed, or the pod is going away
        self._init_done = True
        self.changed()
        await asyncio.gather(*(container.run() for container in self.containers))

    async def stop(self, grace: float) -> None:
        """Graceful termination of every container (in parallel)."""
        self.terminating = True
        await asyncio.gather(
            *(c.stop(grace) for c in [*self.init_containers, *self.containers]),
            return_exceptions=True,
        )
        self.changed()

    def kill(self) -> None:
        self.terminating = True
        for container in [*self.init_containers, *self.containers]:
            container.kill()

    async def close(self) -> None:
        """Stop the worker's own tasks (after the containers are stopped)."""
        await cancel_and_wait(self._tasks)
        self._tasks.clear()

    # --------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        return pod_status(
            pod_ip=self.pod_ip,
            host_ip=self._node.host_ip,
            start_time=self._start_time,
            containers=[c.status for c in self.containers],
            init_containers=[c.status for c in self.init_containers],
            init_done=self._init_done,
            transitions=self._transitions,
            now=now_rfc3339(),
        )

    async def _sync_status(self) -> None:
        while not self.gone:
            await self._dirty.wait()
            self._dirty.clear()
            await self.write_status()

    async def write_status(self) -> None:
        for _ in range(5):
            current = self._cluster.store.get("pods", self.namespace, self.name)
            if current is None or current["metadata"].get("uid") != self.uid:
                self.gone = True
                return
            status = self.status()
            if current.get("status") == status:
                return
            current["status"] = status
            try:
                updated = await self._cluster.update("pods", current, subresource="status")
            except ApiError as exc:
                if exc.code == 409:
                    continue
                if exc.code == 404:
                    self.gone = True
                    return
                log.warning("status of pod %s/%s not written: %s", self.namespace, self.name, exc)
                return
            self.pod = updated
            return
