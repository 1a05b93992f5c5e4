"""The StatefulSet controller against an in-process sandbox cluster.

Covers: pods are named ``<set>-0..N-1`` with hostname, subdomain and the
``controller-revision-hash``, ``statefulset.kubernetes.io/pod-name`` and
``apps.kubernetes.io/pod-index`` labels, owned by the set; OrderedReady creates
pod N only once pod N-1 is Running and Ready; scale-down removes the highest
ordinal first and waits for it to be gone; Parallel creates every pod at once;
a template change replaces pods in reverse ordinal order, one at a time, each
waiting for the previous replacement to be Ready, then currentRevision moves to
updateRevision; a partition keeps lower ordinals (even recreated ones) at the
current revision until it is lowered; OnDelete leaves pods alone; status counts;
SuccessfulCreate Events.
"""

from __future__ import annotations

from typing import Any

from sandbox.cluster import Cluster

from .helpers import (
    StandInNode,
    container,
    events,
    is_ready,
    mark_ready,
    pods,
    set_image,
    until,
    workload,
)

STS = "statefulsets.apps"


def statefulset(name: str, replicas: int, **spec: Any) -> dict[str, Any]:
    spec = {"serviceName": name, **spec}
    return workload("StatefulSet", name, replicas, [container(image="demo/db:1")], **spec)


def names(cluster: Cluster, app: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in pods(cluster, app=app))


def status(cluster: Cluster, name: str) -> dict[str, Any]:
    sts = cluster.store.get(STS, "default", name)
    assert sts is not None
    return sts.get("status") or {}


def pod(cluster: Cluster, name: str) -> dict[str, Any] | None:
    return cluster.store.get("pods", "default", name)


async def ready_in_order(cluster: Cluster, app: str, count: int) -> None:
    """Mark pods Ready one by one, checking that only the next ordinal exists each time."""
    for ordinal in range(count):
        name = f"{app}-{ordinal}"
        created = await until(cluster, lambda n=name: pod(cluster, n), what=name)  # type: ignore[misc]
        assert f"{app}-{ordinal + 1}" not in names(cluster, app), (
            "created before its predecessor was Ready"
        )
        await mark_ready(cluster, created)


async def test_ordered_ready_creates_one_at_a_time(cluster: Cluster) -> None:
    sts = await cluster.create(STS, statefulset("web", 3))
    await ready_in_order(cluster, "web", 3)
    await until(cluster, lambda: status(cluster, "web").get("readyReplicas") == 3)
    web1 = pod(cluster, "web-1")
    assert web1 is not None
    labels = web1["metadata"]["labels"]
    s = status(cluster, "web")
    assert labels["statefulset.kubernetes.io/pod-name"] == "web-1"
    assert labels["apps.kubernetes.io/pod-index"] == "1"
    assert labels["controller-revision-hash"] == s["updateRevision"] == s["currentRevision"]
    assert s["updateRevision"].startswith("web-")
    assert web1["spec"]["hostname"] == "web-1" and web1["spec"]["subdomain"] == "web"
    assert web1["metadata"]["ownerReferences"][0]["uid"] == sts["metadata"]["uid"]
    assert s["replicas"] == s["currentReplicas"] == s["updatedReplicas"] == 3
    assert s["availableReplicas"] == 3
    created = (
        "statefulset-controller",
        "SuccessfulCreate",
        "create Pod web-2 in StatefulSet web successful",
    )
    await until(cluster, lambda: created in events(cluster, "StatefulSet", "web"))


async def test_scale_down_in_reverse_order(cluster: Cluster, node: StandInNode) -> None:
    await cluster.create(STS, statefulset("web", 3))
    await ready_in_order(cluster, "web", 3)
    node.hold = True
    await cluster.patch(STS, "default", "web", {"spec": {"replicas": 1}}, patch_type="merge")
    await until(
        cluster, lambda: (p := pod(cluster, "web-2")) and p["metadata"].get("deletionTimestamp")
    )
    # web-1 waits until web-2 is gone.
    web1 = pod(cluster, "web-1")
    assert web1 is not None and not web1["metadata"].get("deletionTimestamp")
    node.release()
    await until(cluster, lambda: names(cluster, "web") == ["web-0"])
    await until(cluster, lambda: status(cluster, "web").get("replicas") == 1)


async def test_parallel_creates_all_at_once(cluster: Cluster) -> None:
    await cluster.create(STS, statefulset("web", 3, podManagementPolicy="Parallel"))
    await until(cluster, lambda: names(cluster, "web") == ["web-0", "web-1", "web-2"])
    assert not any(is_ready(p) for p in pods(cluster, app="web"))


async def test_rolling_update_in_reverse_ordinal_order(cluster: Cluster) -> None:
    await cluster.create(STS, statefulset("web", 3))
    await ready_in_order(cluster, "web", 3)
    old_revision = await until(cluster, lambda: status(cluster, "web").get("currentRevision"))
    await set_image(cluster, STS, "web", "demo/db:2")
    new_revision = await until(
        cluster,
        lambda: (r := status(cluster, "web").get("updateRevision")) != old_revision and r,
    )
    assert status(cluster, "web")["currentRevision"] == old_revision
    for ordinal in (2, 1, 0):
        name = f"web-{ordinal}"
        replaced = await until(
            cluster,
            lambda n=name: (
                (p := pod(cluster, n))  # type: ignore[misc]
                and p["metadata"]["labels"]["controller-revision-hash"] == new_revision
                and p
            ),
            what=f"{name} at the new revision",
        )
        for lower in range(ordinal):
            other = pod(cluster, f"web-{lower}")
            assert other is not None
            assert other["metadata"]["labels"]["controller-revision-hash"] == old_revision
        assert replaced["spec"]["containers"][0]["image"] == "demo/db:2"
        await mark_ready(cluster, replaced)
    await until(cluster, lambda: status(cluster, "web").get("currentRevision") == new_revision)
    s = status(cluster, "web")
    assert s["currentReplicas"] == s["updatedReplicas"] == s["readyReplicas"] == 3


async def test_on_delete_leaves_pods_alone(cluster: Cluster) -> None:
    await cluster.create(STS, statefulset("web", 1, updateStrategy={"type": "OnDelete"}))
    await ready_in_order(cluster, "web", 1)
    await set_image(cluster, STS, "web", "demo/db:2")
    await until(cluster, lambda: status(cluster, "web").get("observedGeneration") == 2)
    web0 = pod(cluster, "web-0")
    assert web0 is not None and web0["spec"]["containers"][0]["image"] == "demo/db:1"
    await cluster.delete("pods", "default", "web-0")
    await until(
        cluster,
        lambda: (p := pod(cluster, "web-0")) and p["spec"]["containers"][0]["image"] == "demo/db:2",
    )


async def test_partition_holds_lower_ordinals_at_the_current_revision(cluster: Cluster) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}
    await cluster.create(STS, statefulset("web", 3, updateStrategy=strategy))
    await ready_in_order(cluster, "web", 3)
    old_revision = await until(cluster, lambda: status(cluster, "web").get("currentRevision"))
    await set_image(cluster, STS, "web", "demo/db:2")
    web2 = await until(
        cluster,
        lambda: (
            (p := pod(cluster, "web-2"))
            and p["spec"]["containers"][0]["image"] == "demo/db:2"
            and p
        ),
    )
    await mark_ready(cluster, web2)
    await until(cluster, lambda: status(cluster, "web").get("updatedReplicas") == 1)
    # A pod below the partition that goes is recreated from the old template.
    await cluster.delete("pods", "default", "web-0")
    web0 = await until(
        cluster,
        lambda: (p := pod(cluster, "web-0")) and not p["metadata"].get("deletionTimestamp") and p,
    )
    assert web0["spec"]["containers"][0]["image"] == "demo/db:1"
    assert web0["metadata"]["labels"]["controller-revision-hash"] == old_revision
    await mark_ready(cluster, web0)
    assert status(cluster, "web")["currentRevision"] == old_revision
    # Lowering the partition lets the rollout finish.
    await cluster.patch(
        STS,
        "default",
        "web",
        {"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}},
        patch_type="merge",
    )
    for name in ("web-1", "web-0"):
        replaced = await until(
            cluster,
            lambda n=name: (
                (p := pod(cluster, n))  # type: ignore[misc]
                and p["spec"]["containers"][0]["image"] == "demo/db:2"
                and p
            ),
        )
        await mark_ready(cluster, replaced)
    await until(
        cluster,
        lambda: (
            status(cluster, "web").get("currentRevision")
            == status(cluster, "web").get("updateRevision")
        ),
    )
