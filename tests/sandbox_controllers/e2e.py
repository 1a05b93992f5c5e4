"""End-to-end plumbing: a sandbox API server with controllers but no kubelet, and a
stand-in kubelet that speaks to it only through the real ``kubernetes`` client."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from sandbox.server import ADMIN_CONTEXT, Sandbox
from tests.sandbox.helpers import serving


@dataclass
class Server:
    sandbox: Sandbox
    loop: asyncio.AbstractEventLoop

    @property
    def kubeconfig(self) -> Path:
        return self.sandbox.kubeconfig

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(
            config_file=str(self.kubeconfig), context=ADMIN_CONTEXT
        )

    def kubectl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        return subprocess.run(
            ["kubectl", "--context", ADMIN_CONTEXT, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )

    def kubectl_ok(self, *args: str, timeout: float = 60) -> str:
        """``kubectl``'s output; the test fails with its stderr unless it succeeded."""
        out = self.kubectl(*args, timeout=timeout)
        assert out.returncode == 0, out.stderr
        return out.stdout


def serve(directory: Path) -> Iterator[Server]:
    """Run a sandbox without a kubelet on its own loop and thread."""
    box = Sandbox(directory, kubelet=False, bookmark_interval=1.0)
    with serving(box, thread_name="sandbox-controllers-e2e") as loop:
        yield Server(box, loop)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StandInKubelet:
    """Watches a namespace's pods; binds them to the node, runs them (Running, Ready,
    an IP) and finishes their deletion, as the kubelet would. ``ready`` decides which
    pods become Ready."""

    def __init__(self, api: client.ApiClient, namespace: str, server: Server) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.server = server
        self.ready: Callable[[Any], bool] = lambda pod: True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._seen: set[str] = set()
        self.errors: list[BaseException] = []

    def __enter__(self) -> StandInKubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self.errors, self.errors

    def _run(self) -> None:
        version = ""
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    resource_version=version,
                    timeout_seconds=1,
                ):
                    pod = event["object"]
                    version = pod.metadata.resource_version
                    if event["type"] != "DELETED":
                        self._handle(pod)
                    if self._stop.is_set():
                        w.stop()
            except client.ApiException as exc:
                if exc.status == 410:
                    version = ""
                    continue
                self.errors.append(exc)
                return
            except Exception as exc:  # pragma: no cover - surfaced in __exit__
                self.errors.append(exc)
                return

    def _handle(self, pod: Any) -> None:
        name = pod.metadata.name
        if pod.metadata.deletion_timestamp is not None:
            try:
                self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
            return
        if not pod.spec.node_name:
            try:
                self.core.patch_namespaced_pod(
                    name, self.namespace, {"spec": {"nodeName": "sandbox"}}
                )
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
            return  # the bound pod comes back as a MODIFIED event
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        ready = self.ready(pod)
        if pod.status.pod_ip and conditions.get("Ready") == ("True" if ready else "False"):
            return
        self.set_status(pod, ready=ready)

    def set_status(self, pod: Any, *, ready: bool) -> None:
        ip = pod.status.pod_ip or self._allocate_ip()
        stamp, flag = _now(), "True" if ready else "False"
        status = {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "hostIP": "127.0.0.1",
            "startTime": stamp,
            "conditions": [
                {"type": t, "status": s, "lastTransitionTime": stamp}
                for t, s in (
                    ("Initialized", "True"),
                    ("Ready", flag),
                    ("ContainersReady", flag),
                    ("PodScheduled", "True"),
                )
            ],
            "containerStatuses": [
                {
                    "name": c.name,
                    "image": c.image,
                    "imageID": f"sandbox://{c.image}",
                    "containerID": f"sandbox://{pod.metadata.uid}/{c.name}",
                    "ready": ready,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": stamp}},
                }
                for c in pod.spec.containers
            ],
        }
        try:
            self.core.patch_namespaced_pod_status(
                pod.metadata.name, self.namespace, {"status": status}
            )
        except client.ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def _allocate_ip(self) -> str:
        """A pod IP from the sandbox's own pool (allocated on its loop, as its kubelet does)."""
        cluster = self.server.sandbox.cluster
        assert cluster is not None

        async def allocate() -> str:
            return cluster.ipam.allocate_pod_ip()

        return asyncio.run_coroutine_threadsafe(allocate(), self.server.loop).result(10)
