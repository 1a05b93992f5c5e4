"""Controllers keep going when one object cannot be reconciled.

Covers: a ReplicaSet whose pods are refused (a mutating webhook with
``failurePolicy: Fail`` that cannot be reached) gets a ``ReplicaFailure``
condition (reason FailedCreate) while another ReplicaSet is served normally;
once the webhook is gone, the retries (with back-off, no polling) create its
pods and the condition is cleared; controllers restarted on the same cluster
find the work done and change nothing (same pods, one ReplicaSet).
"""

from __future__ import annotations

import socket
from typing import Any

from sandbox.admission import MutatingAdmission
from sandbox.cluster import Cluster

from .helpers import (
    container,
    control_plane,
    deployment,
    is_ready,
    mark_ready,
    pods,
    until,
)

RS = "replicasets.apps"
WEBHOOKS = "mutatingwebhookconfigurations.admissionregistration.k8s.io"


def replicaset(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container()]},
            },
        },
    }


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def failure(cluster: Cluster, name: str) -> dict[str, Any] | None:
    rs = cluster.store.get(RS, "default", name) or {}
    for cond in (rs.get("status") or {}).get("conditions") or []:
        if cond["type"] == "ReplicaFailure":
            return dict(cond)
    return None


async def test_refused_pods_do_not_stop_the_controller(cluster: Cluster) -> None:
    cluster.admission = MutatingAdmission(cluster.store)
    webhook = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "unreachable"},
        "webhooks": [
            {
                "name": "unreachable.example.com",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 1,
                "clientConfig": {"url": f"https://127.0.0.1:{closed_port()}/mutate"},
                "objectSelector": {"matchLabels": {"app": "broken"}},
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                    }
                ],
            }
        ],
    }
    await cluster.create(WEBHOOKS, webhook)
    await cluster.create(RS, replicaset("broken"))
    await cluster.create(RS, replicaset("fine"))
    cond = await until(
        cluster, lambda: failure(cluster, "broken"), what="a ReplicaFailure condition"
    )
    assert (cond["status"], cond["reason"]) == ("True", "FailedCreate")
    assert "failed calling webhook" in cond["message"]
    await until(cluster, lambda: len(pods(cluster, app="fine")) == 2)
    assert not pods(cluster, app="broken")

    await cluster.delete(WEBHOOKS, None, "unreachable")
    await until(cluster, lambda: len(pods(cluster, app="broken")) == 2, timeout=15)
    await until(cluster, lambda: failure(cluster, "broken") is None)


async def _run_controllers_until_available(c: Cluster) -> list[str]:
    """Start fresh controllers, wait until 3 replicas are available, stop them."""
    async with control_plane(c):
        if c.store.get("deployments.apps", "default", "hello") is None:
            await c.create("deployments.apps", deployment("hello", 3))
        found = await until(c, lambda: len(pods(c, app="hello")) == 3 and pods(c, app="hello"))
        for pod in found:
            if not is_ready(pod):
                await mark_ready(c, pod)

        def available() -> int:
            d = c.store.get("deployments.apps", "default", "hello") or {}
            return int((d.get("status") or {}).get("availableReplicas") or 0)

        await until(c, lambda: available() == 3)
    return sorted(p["metadata"]["name"] for p in pods(c, app="hello"))


async def test_restarted_controllers_pick_up_where_they_left_off() -> None:
    """Level-triggered: new controller instances read the state, they do not redo it."""
    c = Cluster()
    try:
        await c.create("namespaces", {"metadata": {"name": "default"}})
        first = await _run_controllers_until_available(c)
        again = await _run_controllers_until_available(c)
        assert again == first
        assert len(c.store.list("replicasets.apps", "default")) == 1
    finally:
        c.close()
