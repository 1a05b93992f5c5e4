"""Live discovery against a real sandbox API server.

Covers: workloads across namespaces and in one namespace (Deployments, bare
ReplicaSets, StatefulSets; ReplicaSets owned by Deployments hidden), the
Services selecting each and their ports, agent state from pod containers and
the template annotation; namespaces with workload counts; change notices
driven by watches (a new Deployment, a deleted Service) with views that
follow; intercepts merged in via set_intercepts; an RBAC-limited user gets
the kubeconfig namespace instead of a failure, and a clear RbacDenied for a
namespace it may not read; an unreachable cluster fails at connect.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from core.discovery import Change, Discovery
from core.errors import ContextUnreachable, RbacDenied
from core.models import WorkloadInfo
from core.protocol import InterceptInfo, InterceptSpec
from tests.core import objects as o
from tests.core.apiserver import SandboxApi, write_kubeconfig


async def _populate(api: SandboxApi) -> None:
    orders = await api.create(
        "deployments.apps", o.workload("Deployment", "orders", replicas=2, agent_config=True)
    )
    rs = await api.create("replicasets.apps", o.workload("ReplicaSet", "orders-1", owner=orders))
    await api.create("pods", o.pod("orders-1-a", rs, agent=True))
    await api.create("pods", o.pod("orders-1-b", rs, agent=False))
    legacy = await api.create("replicasets.apps", o.workload("ReplicaSet", "legacy"))
    await api.create("pods", o.pod("legacy-a", legacy))
    await api.create("statefulsets.apps", o.workload("StatefulSet", "db"))
    await api.create("deployments.apps", o.workload("Deployment", "elsewhere", "other"))
    await api.create("services", o.service("orders", "orders"))
    await api.create(
        "services",
        o.service(
            "orders-admin",
            "orders",
            ports=[
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "grpc", "port": 9090, "targetPort": 9090},
            ],
        ),
    )
    await api.create("services", o.service("elsewhere", "elsewhere", "other"))


@pytest.fixture
async def disc(api: SandboxApi) -> AsyncIterator[Discovery]:
    await _populate(api)
    async with await Discovery.connect("admin", str(api.kubeconfig)) as d:
        yield d


def _by_name(workloads: list[WorkloadInfo]) -> dict[str, WorkloadInfo]:
    return {w.name: w for w in workloads}


async def test_workloads_and_namespaces(disc: Discovery) -> None:
    everything = _by_name(await disc.workloads(None))
    assert sorted(everything) == ["db", "elsewhere", "legacy", "orders"]
    orders = everything["orders"]
    assert (orders.kind, orders.replicas) == ("Deployment", 2)
    assert [s.name for s in orders.services] == ["orders", "orders-admin"]
    assert [p.label for p in orders.services[1].ports] == ["http", "grpc"]
    assert orders.services[1].ports[1].target_port == 9090
    assert orders.agent_state == "partial"
    assert everything["legacy"].kind == "ReplicaSet"
    assert everything["legacy"].agent_state == "none"
    assert everything["db"].kind == "StatefulSet"
    assert everything["elsewhere"].namespace == "other"
    demo = _by_name(await disc.workloads("demo"))
    assert sorted(demo) == ["db", "legacy", "orders"]
    namespaces = {n.name: n.workload_count for n in await disc.namespaces()}
    assert namespaces["demo"] == 3 and namespaces["other"] == 1 and namespaces["default"] == 0


async def _next_change(changes: AsyncIterator[Change], kind: str) -> Change:
    with anyio.fail_after(15):
        async for change in changes:
            if change.kind == kind:
                return change
    raise AssertionError("changes ended")


async def test_changes_follow_watches(api: SandboxApi, disc: Discovery) -> None:
    await disc.workloads(None)
    changes = disc.changes()
    await api.create("deployments.apps", o.workload("Deployment", "fresh"))
    change = await _next_change(changes, "workloads")
    assert change.namespace == "demo"
    with anyio.fail_after(15):
        while "fresh" not in _by_name(await disc.workloads("demo")):
            await _next_change(changes, "workloads")
    await api.cluster.delete("services", "demo", "orders-admin")
    with anyio.fail_after(15):
        while len(_by_name(await disc.workloads("demo"))["orders"].services) != 1:
            await _next_change(changes, "workloads")
    spec = InterceptSpec(
        name="orders-demo", namespace="demo", workload="orders", service="orders", service_port=80
    )
    info = InterceptInfo(
        id="s:orders-demo", spec=spec, session_id="s", owner="me", created=datetime.now(UTC)
    )
    disc.set_intercepts([info])
    await _next_change(changes, "intercepts")
    assert _by_name(await disc.workloads("demo"))["orders"].intercepts == [info]
    await changes.aclose()  # type: ignore[attr-defined]


async def test_rbac_limited_view(api: SandboxApi) -> None:
    await _populate(api)
    async with await Discovery.connect("limited", str(api.kubeconfig)) as disc:
        assert sorted(_by_name(await disc.workloads(None))) == ["db", "legacy", "orders"]
        assert [n.name for n in await disc.namespaces()] == ["demo"]
        with pytest.raises(RbacDenied) as info:
            await disc.workloads("other")
        assert "namespace 'other'" in info.value.title


async def test_unreachable_at_connect(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_kubeconfig(tmp_path / "k", f"http://127.0.0.1:{port}", {"admin": "t"})
    with anyio.fail_after(30), pytest.raises(ContextUnreachable):
        await Discovery.connect(kubeconfig=str(path))
