"""Building workload views from raw API objects.

Covers: Deployments, bare ReplicaSets and StatefulSets are workloads, a
ReplicaSet owned by a Deployment is not; Services are matched by selector
within the namespace (a Service with no selector matches nothing); a
Deployment's pods are found through its ReplicaSets; agent state is none /
injecting / partial / ready; intercepts are attached to their workload;
replicas default to 1; namespace filtering.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.inventory import AGENT_CONTAINER, build_workloads, selects
from core.protocol import AGENT_CONFIG_ANNOTATION, InterceptInfo, InterceptSpec


def _obj(kind: str, name: str, ns: str = "demo", **extra: Any) -> dict[str, Any]:
    meta = {"name": name, "namespace": ns, "uid": f"uid-{kind}-{name}"}
    meta.update(extra.pop("meta", {}))
    return {"kind": kind, "metadata": meta, **extra}


def _workload(
    kind: str, name: str, labels: dict[str, str], *, agent: bool = False, **kw: Any
) -> dict[str, Any]:
    annotations = {AGENT_CONFIG_ANNOTATION: "{}"} if agent else {}
    spec = {"template": {"metadata": {"labels": labels, "annotations": annotations}}}
    spec.update(kw.pop("spec", {}))
    return _obj(kind, name, spec=spec, **kw)


def _pod(
    name: str, owner: dict[str, Any], *, agent: bool = False, ready: bool = True
) -> dict[str, Any]:
    containers = [{"name": "app"}] + ([{"name": AGENT_CONTAINER}] if agent else [])
    statuses = [{"name": c["name"], "ready": ready} for c in containers]
    return _obj(
        "Pod",
        name,
        meta={"ownerReferences": [{"kind": owner["kind"], "uid": owner["metadata"]["uid"]}]},
        spec={"containers": containers},
        status={"phase": "Running", "containerStatuses": statuses},
    )


def _svc(name: str, selector: dict[str, str] | None, ns: str = "demo") -> dict[str, Any]:
    return _obj(
        "Service",
        name,
        ns,
        spec={"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    )


def test_selects() -> None:
    assert selects({"app": "a"}, {"app": "a", "x": "y"})
    assert not selects({"app": "a"}, {"app": "b"})
    assert not selects({}, {"app": "a"})
    assert not selects(None, {"app": "a"})


def test_workload_kinds_services_and_agent_states() -> None:
    orders = _workload(
        "Deployment",
        "orders",
        {"app": "orders"},
        agent=True,
        spec={"replicas": 2},
        status={"readyReplicas": 2},
    )
    rs_owned = _obj(
        "ReplicaSet",
        "orders-abc",
        meta={"ownerReferences": [{"kind": "Deployment", "uid": "uid-Deployment-orders"}]},
        spec={"template": {"metadata": {"labels": {"app": "orders"}}}},
    )
    legacy = _workload("ReplicaSet", "legacy", {"app": "legacy"}, agent=True)
    db = _workload("StatefulSet", "db", {"app": "db"})
    other_ns = _workload("Deployment", "orders", {"app": "orders"}, meta={"namespace": "prod"})
    pods = [
        _pod("orders-1", rs_owned, agent=True),
        _pod("orders-2", rs_owned, agent=True),
        _pod("legacy-1", legacy, agent=True),
        _pod("legacy-2", legacy, agent=False),
        _pod("db-0", db),
    ]
    services = [
        _svc("orders", {"app": "orders"}),
        _svc("orders-admin", {"app": "orders"}),
        _svc("headless", None),
        _svc("prod-orders", {"app": "orders"}, ns="prod"),
    ]
    spec = InterceptSpec(
        name="orders-demo", namespace="demo", workload="orders", service="orders", service_port=80
    )
    icpt = InterceptInfo(
        id="s:orders-demo", spec=spec, session_id="s", owner="me", created=datetime.now(UTC)
    )
    result = build_workloads(
        deployments=[orders, other_ns],
        replicasets=[rs_owned, legacy],
        statefulsets=[db],
        services=services,
        pods=pods,
        intercepts=[icpt],
        namespace="demo",
    )
    by_name = {w.name: w for w in result}
    assert sorted(by_name) == ["db", "legacy", "orders"]
    assert by_name["orders"].kind == "Deployment"
    assert [s.name for s in by_name["orders"].services] == ["orders", "orders-admin"]
    assert by_name["orders"].agent_state == "ready"
    assert (by_name["orders"].replicas, by_name["orders"].ready) == (2, 2)
    assert by_name["orders"].intercepts == [icpt]
    assert by_name["legacy"].agent_state == "partial"
    assert by_name["legacy"].replicas == 1
    assert by_name["db"].agent_state == "none"
    assert by_name["db"].services == []
    everything = build_workloads(
        deployments=[orders, other_ns],
        replicasets=[rs_owned, legacy],
        statefulsets=[db],
        services=services,
        pods=pods,
    )
    assert {(w.namespace, w.name) for w in everything} >= {("prod", "orders"), ("demo", "orders")}
    prod = next(w for w in everything if w.namespace == "prod")
    assert [s.name for s in prod.services] == ["prod-orders"]
    assert prod.intercepts == []


def test_injecting_when_configured_but_no_pod_has_it() -> None:
    dep = _workload("Deployment", "web", {"app": "web"}, agent=True)
    rs = _obj(
        "ReplicaSet",
        "web-1",
        meta={"ownerReferences": [{"kind": "Deployment", "uid": dep["metadata"]["uid"]}]},
    )
    pods = [_pod("web-1-a", rs)]
    [w] = build_workloads(
        deployments=[dep], replicasets=[rs], statefulsets=[], services=[], pods=pods
    )
    assert w.agent_state == "injecting"
    pods_not_ready = [_pod("web-1-a", rs, agent=True, ready=False)]
    [w] = build_workloads(
        deployments=[dep], replicasets=[rs], statefulsets=[], services=[], pods=pods_not_ready
    )
    assert w.agent_state == "partial"
