"""Helpers for the sandbox runtime tests: waiting on conditions, small pod specs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.stream import portforward

from sandbox.kubelet import Timings

T = TypeVar("T")

FAST = Timings(backoff_initial=0.5, backoff_max=2.0, backoff_reset=600.0)
"""CrashLoopBackOff delays short enough for a test, with the real doubling."""


async def wait_for(
    check: Callable[[], T | None], *, timeout: float = 15.0, what: str = "condition"
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


READY = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}
"""The demo HTTP echo's readiness probe: Ready means it answers."""


def container(name: str = "web", image: str = "waylay/demo-http-echo", **extra: Any) -> dict:
    spec = {"name": name, "image": image, **extra}
    if image == "waylay/demo-http-echo":
        spec.setdefault("readinessProbe", READY)
    return spec


def pod(name: str, *containers: dict, namespace: str = "default", **spec: Any) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"containers": list(containers) or [container()], **spec},
    }


def condition(pod: dict | None, kind: str) -> str | None:
    for item in ((pod or {}).get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return str(item["status"])
    return None


def container_status(pod: dict | None, name: str) -> dict:
    for item in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if item["name"] == name:
            return dict(item)
    return {}


def events(cluster: Any, name: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events about object ``name``."""
    found = [e for e in cluster.store.list("events") if e["involvedObject"].get("name") == name]
    found.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))
    return [(e["type"], e["reason"], e["message"]) for e in found]


async def http_get(host: str, port: int, path: str = "/", *, timeout: float = 5.0) -> bytes:
    """A raw HTTP/1.0 GET; the whole response (head and body)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET {path} HTTP/1.0\r\nHost: test\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read()
        writer.close()
        return data


def get_via_portforward(
    api: client.CoreV1Api, pod: str, namespace: str, path: str, *, timeout: float
) -> bytes:
    """The whole reply (head and body) to ``GET path`` (HTTP/1.0) on the pod's port
    8080, through ``pods/portforward`` with the ``kubernetes`` client (blocking)."""
    forward = portforward(api.connect_get_namespaced_pod_portforward, pod, namespace, ports="8080")
    sock = forward.socket(8080)
    sock.settimeout(timeout)
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    sock.close()
    return b"".join(chunks)
