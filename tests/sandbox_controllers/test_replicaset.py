"""The ReplicaSet controller against an in-process sandbox cluster.

Covers: pods are created to match ``replicas`` with ``generateName <rs>-`` and
a controller owner reference (controller, blockOwnerDeletion) and the template's
labels; status counts (replicas, fullyLabeledReplicas, readyReplicas,
availableReplicas, observedGeneration) follow pod readiness; scaling down
deletes not-ready pods first; a deleted pod is replaced; matching orphans are
adopted instead of creating more pods; a pod relabelled out of the selector is
released and replaced; minReadySeconds delays availability; deleting the
ReplicaSet removes its pods (through garbage collection); SuccessfulCreate
Events are recorded.
"""

from __future__ import annotations

from typing import Any

from sandbox.cluster import Cluster

from .helpers import container, events, is_ready, mark_ready, pods, until, workload

RS = "replicasets.apps"


def replicaset(name: str, replicas: int, **spec: Any) -> dict[str, Any]:
    labels = {"app": name, "tier": "web"}
    return workload("ReplicaSet", name, replicas, [container()], labels=labels, **spec)


def status(cluster: Cluster, name: str) -> dict[str, Any]:
    rs = cluster.store.get(RS, "default", name)
    assert rs is not None
    return rs.get("status") or {}


async def test_creates_owned_pods_and_counts_ready_ones(cluster: Cluster) -> None:
    rs = await cluster.create(RS, replicaset("web", 3))
    created = await until(
        cluster, lambda: len(pods(cluster, app="web")) == 3 and pods(cluster, app="web")
    )
    for pod in created:
        meta = pod["metadata"]
        assert meta["name"].startswith("web-") and len(meta["name"]) == len("web-") + 5
        assert meta["generateName"] == "web-"
        assert meta["labels"] == {"app": "web", "tier": "web"}
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web",
                "uid": rs["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    await until(cluster, lambda: status(cluster, "web").get("replicas") == 3)
    assert status(cluster, "web").get("readyReplicas", 0) == 0
    for pod in created[:2]:
        await mark_ready(cluster, pod)
    await until(cluster, lambda: status(cluster, "web").get("readyReplicas") == 2)
    final = status(cluster, "web")
    assert final["availableReplicas"] == 2
    assert final["fullyLabeledReplicas"] == 3
    assert final["observedGeneration"] == 1
    created_events = {
        ("replicaset-controller", "SuccessfulCreate", f"Created pod: {p['metadata']['name']}")
        for p in created
    }
    await until(cluster, lambda: created_events <= set(events(cluster, "ReplicaSet", "web")))


async def test_scale_down_deletes_not_ready_pods_first(cluster: Cluster) -> None:
    await cluster.create(RS, replicaset("web", 3))
    created = await until(
        cluster, lambda: len(pods(cluster, app="web")) == 3 and pods(cluster, app="web")
    )
    for pod in created[:2]:
        await mark_ready(cluster, pod)
    await until(cluster, lambda: status(cluster, "web").get("readyReplicas") == 2)
    await cluster.patch(RS, "default", "web", {"spec": {"replicas": 2}}, patch_type="merge")
    left = await until(
        cluster, lambda: len(pods(cluster, app="web")) == 2 and pods(cluster, app="web")
    )
    assert all(is_ready(p) for p in left)
    await until(cluster, lambda: status(cluster, "web").get("observedGeneration") == 2)


async def test_replaces_a_deleted_pod(cluster: Cluster) -> None:
    await cluster.create(RS, replicaset("web", 2))
    first = await until(
        cluster, lambda: len(pods(cluster, app="web")) == 2 and pods(cluster, app="web")
    )
    await cluster.delete("pods", "default", first[0]["metadata"]["name"])
    names = {p["metadata"]["name"] for p in first}
    await until(
        cluster,
        lambda: (
            len(pods(cluster, app="web")) == 2
            and {p["metadata"]["name"] for p in pods(cluster, app="web")} != names
        ),
    )


async def test_adopts_matching_orphans(cluster: Cluster) -> None:
    orphan = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "stray", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [container()]},
    }
    await cluster.create("pods", orphan)
    rs = await cluster.create(RS, replicaset("web", 2))
    await until(cluster, lambda: status(cluster, "web").get("replicas") == 2)
    found = pods(cluster, app="web")
    assert len(found) == 2
    stray = cluster.store.get("pods", "default", "stray")
    assert stray is not None
    assert stray["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
    assert status(cluster, "web")["fullyLabeledReplicas"] == 1  # the orphan lacks tier=web


async def test_releases_a_relabelled_pod_and_replaces_it(cluster: Cluster) -> None:
    await cluster.create(RS, replicaset("web", 1))
    (pod,) = await until(cluster, lambda: pods(cluster, app="web"))
    await cluster.patch(
        "pods",
        "default",
        pod["metadata"]["name"],
        {"metadata": {"labels": {"app": "debug"}}},
        patch_type="merge",
    )
    await until(cluster, lambda: len(pods(cluster, app="web")) == 1)
    released = await until(
        cluster,
        lambda: (
            not (p := cluster.store.get("pods", "default", pod["metadata"]["name"]))[
                "metadata"
            ].get("ownerReferences")
            and p
        ),
    )
    assert released["metadata"]["labels"]["app"] == "debug"


async def test_min_ready_seconds_delays_availability(cluster: Cluster) -> None:
    # Timestamps have whole seconds, so 2s leaves at least 1s to see "ready, not available".
    await cluster.create(RS, replicaset("web", 1, minReadySeconds=2))
    (pod,) = await until(cluster, lambda: pods(cluster, app="web"))
    await mark_ready(cluster, pod)
    await until(cluster, lambda: status(cluster, "web").get("readyReplicas") == 1)
    assert status(cluster, "web").get("availableReplicas", 0) == 0
    await until(cluster, lambda: status(cluster, "web").get("availableReplicas") == 1, timeout=5)


async def test_deleting_the_replicaset_removes_its_pods(cluster: Cluster) -> None:
    await cluster.create(RS, replicaset("web", 2))
    await until(cluster, lambda: len(pods(cluster, app="web")) == 2)
    await cluster.delete(RS, "default", "web")
    await until(cluster, lambda: not pods(cluster, app="web"))
