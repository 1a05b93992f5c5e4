"""The service layer (``sandbox.cluster.Cluster``) as controllers and the kubelet use it.

Covers: subscribers get ADDED/MODIFIED/DELETED in order, with copies they may
keep; an update that changes nothing writes nothing (same resourceVersion, no
event); ``metadata.generation`` moves only with the spec; a pod on a node is
deleted gracefully (deletionTimestamp + grace period) and removed by a second
delete with grace 0, an unscheduled pod at once; creating in a missing
namespace is 404; admission sees a ``generateName`` object before it has a
name; a stale update is 409; the watch hub answers 410 for compacted versions;
Services get a ClusterIP from the block (kept on update, released on delete,
422 when a requested one is taken), node ports, and keep them across a
snapshot and restore.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from sandbox.auth import UserInfo
from sandbox.cluster import Cluster
from sandbox.errors import ApiError
from sandbox.ipam import Ipam
from sandbox.store import Store


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster()
    await c.create(
        "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}
    )
    yield c
    c.close()


def _cm(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns"},
        "data": data,
    }


def _pod(name: str, node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "x"}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": spec,
    }


async def test_subscribers_and_noop_updates(cluster: Cluster) -> None:
    seen: list[tuple[str, str, dict[str, Any]]] = []
    cluster.subscribe(lambda kind, resource, obj: seen.append((kind, resource, obj)))
    made = await cluster.create("configmaps", _cm("a", x="1"))
    seen[0][2]["data"]["x"] = "mutated by a subscriber"
    assert cluster.store.get("configmaps", "ns", "a")["data"] == {"x": "1"}

    same = await cluster.update("configmaps", made)
    assert same["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]
    assert len(seen) == 1

    changed = await cluster.patch("configmaps", "ns", "a", {"data": {"x": "2"}}, patch_type="merge")
    assert int(changed["metadata"]["resourceVersion"]) > int(made["metadata"]["resourceVersion"])
    await cluster.delete("configmaps", "ns", "a")
    assert [(k, r) for k, r, _ in seen] == [
        ("ADDED", "configmaps"),
        ("MODIFIED", "configmaps"),
        ("DELETED", "configmaps"),
    ]
    with pytest.raises(ApiError) as deleted:
        await cluster.update("configmaps", {**made, "data": {"y": "1"}})
    assert deleted.value.code == 404


async def test_generation_and_conflict(cluster: Cluster) -> None:
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "ns"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    made = await cluster.create("deployments.apps", dep)
    assert made["metadata"]["generation"] == 1 and made["spec"]["replicas"] == 1
    labelled = await cluster.patch(
        "deployments.apps", "ns", "d", {"metadata": {"labels": {"x": "y"}}}, patch_type="merge"
    )
    assert labelled["metadata"]["generation"] == 1
    scaled = await cluster.patch(
        "deployments.apps", "ns", "d", {"spec": {"replicas": 4}}, patch_type="merge"
    )
    assert scaled["metadata"]["generation"] == 2
    with_status = await cluster.update(
        "deployments.apps", {**scaled, "status": {"replicas": 4}}, subresource="status"
    )
    assert with_status["metadata"]["generation"] == 2
    with pytest.raises(ApiError) as conflict:
        await cluster.update("deployments.apps", made)
    assert conflict.value.code == 409 and conflict.value.reason == "Conflict"


async def test_pod_deletion(cluster: Cluster) -> None:
    await cluster.create("pods", _pod("bound", node="sandbox"))
    first = await cluster.delete("pods", "ns", "bound")
    assert first["metadata"]["deletionTimestamp"]
    assert first["metadata"]["deletionGracePeriodSeconds"] == 30
    assert cluster.store.get("pods", "ns", "bound") is not None
    await cluster.delete("pods", "ns", "bound", grace_period_seconds=0)
    assert cluster.store.get("pods", "ns", "bound") is None

    await cluster.create("pods", _pod("pending"))
    await cluster.delete("pods", "ns", "pending")
    assert cluster.store.get("pods", "ns", "pending") is None


async def test_missing_namespace(cluster: Cluster) -> None:
    body = _cm("x")
    body["metadata"]["namespace"] = "nowhere"
    with pytest.raises(ApiError) as missing:
        await cluster.create("configmaps", body)
    assert missing.value.code == 404 and "nowhere" in missing.value.message


class _RecordingAdmission:
    """The admission seam (``Cluster.admission``), recording what it was shown."""

    def __init__(self) -> None:
        self.names: list[str] = []

    async def admit(
        self,
        *,
        operation: str,
        resource: str,
        obj: dict[str, Any],
        old: Any,
        namespace: str | None,
        user: UserInfo,
        dry_run: bool,
    ) -> dict[str, Any]:
        self.names.append(obj["metadata"].get("name", ""))
        obj["metadata"].setdefault("labels", {})["admitted"] = operation.lower()
        return obj


async def test_admission_before_generated_name(cluster: Cluster) -> None:
    admission = _RecordingAdmission()
    cluster.admission = admission
    pod = _pod("")
    pod["metadata"] = {"generateName": "web-", "namespace": "ns"}
    made = await cluster.create("pods", pod)
    assert admission.names == [""]
    assert made["metadata"]["name"].startswith("web-")
    assert made["metadata"]["labels"] == {"admitted": "create"}


async def test_compaction_is_410(cluster: Cluster) -> None:
    await cluster.create("configmaps", _cm("a"))
    version = cluster.store.revision
    await cluster.create("configmaps", _cm("b"))
    cluster.compact()
    with pytest.raises(ApiError) as gone:
        cluster.watches.watch("configmaps", "ns", version)
    assert gone.value.code == 410
    watcher = cluster.watches.watch("configmaps", "ns", cluster.store.revision)
    await cluster.create("configmaps", _cm("c"))
    event = await watcher.next(timeout=5)
    assert event is not None and event.obj["metadata"]["name"] == "c"
    watcher.close()


def _svc(name: str, **spec: Any) -> dict[str, Any]:
    ports = [{"name": "http", "port": 80}]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"ports": ports, **spec},
    }


async def test_service_addresses(cluster: Cluster) -> None:
    first = await cluster.create("services", _svc("a", type="NodePort"))
    ip = first["spec"]["clusterIP"]
    assert cluster.ipam.services.contains(ip) and first["spec"]["clusterIPs"] == [ip]
    assert 30000 <= first["spec"]["ports"][0]["nodePort"] <= 32767
    with pytest.raises(ApiError) as taken:
        await cluster.create("services", _svc("b", clusterIP=ip))
    assert taken.value.code == 422 and "spec.clusterIP" in taken.value.message
    headless = await cluster.create("services", _svc("h", clusterIP="None"))
    assert headless["spec"]["clusterIPs"] == ["None"]
    first["spec"]["clusterIP"] = ""
    first["spec"]["clusterIPs"] = []
    kept = await cluster.update("services", first)
    assert kept["spec"]["clusterIP"] == ip and kept["spec"]["ports"][0]["nodePort"]

    restarted = Cluster(
        Store.from_snapshot(cluster.store.snapshot()), ipam=Ipam(cluster.ipam.block)
    )
    assert restarted.store.get("services", "ns", "a")["spec"]["clusterIP"] == ip
    assert not restarted.ipam.reserve_service_ip(ip)  # already taken after the restore
    fresh = await restarted.create("services", _svc("c"))
    assert fresh["spec"]["clusterIP"] != ip
    await cluster.delete("services", "ns", "a")
    assert cluster.ipam.reserve_service_ip(ip)  # released with its Service
