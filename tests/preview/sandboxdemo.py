"""The demo's ingress part and two of its apps, in the session's sandbox, for e2e tests."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from core.kube import Kube
from sandbox.demo import demo_objects
from sandbox.errors import ApiError
from tests.sandbox.conftest import SandboxHandle

KEEP_WORKLOADS = {"orders", "hello", "ingress-controller"}
READY_TIMEOUT = 90.0


def subset(objects: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """The demo without the traffic generator and the apps these tests do not use."""
    kept = []
    for resource, obj in objects:
        if resource.endswith(".apps") and obj["metadata"]["name"] not in KEEP_WORKLOADS:
            continue
        if resource == "deployments.apps":
            obj = copy.deepcopy(obj)
            obj["spec"]["replicas"] = 1
        kept.append((resource, obj))
    return kept


def ready(kube: Kube, namespace: str, app: str) -> bool:
    pods, _ = kube.list("v1", "Pod", namespace, label_selector=f"app={app}")
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        for c in (p.get("status") or {}).get("conditions") or []
    )


def wait_ready(kube: Kube, wanted: list[tuple[str, str]], timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not all(ready(kube, ns, app) for ns, app in wanted):
        if time.monotonic() > deadline:
            pytest.fail(f"{wanted} did not become ready in {timeout:g}s")
        time.sleep(0.2)


def install_demo(sandbox: SandboxHandle) -> None:
    assert sandbox.sandbox.ca is not None
    for resource, obj in subset(demo_objects(sandbox.sandbox.ca)):
        try:
            sandbox.call(sandbox.cluster.create(resource, obj))
        except ApiError as exc:
            if exc.code != 409:
                raise
