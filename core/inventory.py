"""From raw API objects to ``WorkloadInfo``: pure functions, no I/O.

Which workloads count (Deployments, ReplicaSets not owned by a Deployment,
StatefulSets), which Services select each one, whose pods they are, and how
far the traffic agent has got into them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from core.models import AgentState, ServicePortInfo, ServiceRef, WorkloadInfo, WorkloadKind
from core.protocol import AGENT_CONFIG_ANNOTATION, AGENT_CONTAINER, InterceptInfo

__all__ = [
    "AGENT_CONTAINER",
    "agent_state",
    "build_workloads",
    "selects",
    "service_ref",
    "workload_pods",
]


Obj = dict[str, Any]


def _meta(obj: Obj) -> Obj:
    meta: Obj = obj.get("metadata") or {}
    return meta


def _owners(obj: Obj) -> list[Obj]:
    owners: list[Obj] = _meta(obj).get("ownerReferences") or []
    return owners


def selects(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """A Service-style equality selector; an empty selector selects nothing."""
    if not selector:
        return False
    return all(labels.get(k) == v for k, v in selector.items())


def service_ref(service: Obj) -> ServiceRef:
    ports = []
    for p in (service.get("spec") or {}).get("ports") or []:
        target = p.get("targetPort", p.get("port"))
        ports.append(
            ServicePortInfo(
                name=p.get("name") or "",
                port=int(p["port"]),
                target_port=target if isinstance(target, str) else int(target),
                protocol=p.get("protocol") or "TCP",
            )
        )
    return ServiceRef(name=_meta(service)["name"], ports=ports)


def _template_labels(workload: Obj) -> dict[str, str]:
    tmpl = (workload.get("spec") or {}).get("template") or {}
    labels: dict[str, str] = _meta(tmpl).get("labels") or {}
    return labels


def _template_annotations(workload: Obj) -> dict[str, str]:
    tmpl = (workload.get("spec") or {}).get("template") or {}
    annotations: dict[str, str] = _meta(tmpl).get("annotations") or {}
    return annotations


def _live(pod: Obj) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return not _meta(pod).get("deletionTimestamp") and phase not in ("Succeeded", "Failed")


def workload_pods(workload: Obj, replicasets: Iterable[Obj], pods: Iterable[Obj]) -> list[Obj]:
    """The live pods a workload owns (through its ReplicaSets for a Deployment)."""
    uid = _meta(workload).get("uid")
    owner_uids = {uid}
    if workload.get("kind") == "Deployment":
        owner_uids |= {
            _meta(rs).get("uid")
            for rs in replicasets
            if any(o.get("uid") == uid for o in _owners(rs))
        }
    return [p for p in pods if _live(p) and any(o.get("uid") in owner_uids for o in _owners(p))]


def _has_agent(pod: Obj) -> bool:
    containers = (pod.get("spec") or {}).get("containers") or []
    return any(c.get("name") == AGENT_CONTAINER for c in containers)


def _agent_ready(pod: Obj) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any(s.get("name") == AGENT_CONTAINER and s.get("ready") for s in statuses)


def agent_state(workload: Obj, pods: Sequence[Obj]) -> AgentState:
    """none, injecting (configured, no pod has it yet), ready (every pod), partial."""
    configured = AGENT_CONFIG_ANNOTATION in _template_annotations(workload)
    with_agent = [p for p in pods if _has_agent(p)]
    if not configured:
        return "partial" if with_agent else "none"
    if pods and all(_agent_ready(p) for p in pods):
        return "ready"
    if not with_agent:
        return "injecting"
    return "partial"


def _counts(workload: Obj) -> tuple[int, int]:
    spec = workload.get("spec") or {}
    status = workload.get("status") or {}
    replicas = spec.get("replicas")
    return (1 if replicas is None else int(replicas)), int(status.get("readyReplicas") or 0)


def _is_workload(obj: Obj) -> bool:
    kind = obj.get("kind")
    if kind in ("Deployment", "StatefulSet"):
        return True
    if kind == "ReplicaSet":
        return not any(o.get("kind") == "Deployment" for o in _owners(obj))
    return False


def build_workloads(
    *,
    deployments: Iterable[Obj],
    replicasets: Iterable[Obj],
    statefulsets: Iterable[Obj],
    services: Iterable[Obj],
    pods: Iterable[Obj],
    intercepts: Iterable[InterceptInfo] = (),
    namespace: str | None = None,
) -> list[WorkloadInfo]:
    """Every workload (of ``namespace``, or all), sorted by namespace then name."""

    def in_scope(objs: Iterable[Obj]) -> list[Obj]:
        return [o for o in objs if namespace is None or _meta(o).get("namespace") == namespace]

    rs_list, svc_list, pod_list = in_scope(replicasets), in_scope(services), in_scope(pods)
    candidates = [
        *({"kind": "Deployment", **d} for d in in_scope(deployments)),
        *({"kind": "ReplicaSet", **r} for r in rs_list),
        *({"kind": "StatefulSet", **s} for s in in_scope(statefulsets)),
    ]
    all_intercepts = list(intercepts)
    result = []
    for obj in candidates:
        if not _is_workload(obj):
            continue
        meta = _meta(obj)
        ns, name, kind = meta.get("namespace", ""), meta["name"], obj["kind"]
        labels = _template_labels(obj)
        svcs = sorted(
            (
                service_ref(s)
                for s in svc_list
                if _meta(s).get("namespace") == ns
                and selects((s.get("spec") or {}).get("selector"), labels)
            ),
            key=lambda r: r.name,
        )
        pods_of = workload_pods(
            obj, rs_list, (p for p in pod_list if _meta(p).get("namespace") == ns)
        )
        replicas, ready = _counts(obj)
        result.append(
            WorkloadInfo(
                namespace=ns,
                name=name,
                kind=_kind(kind),
                replicas=replicas,
                ready=ready,
                services=svcs,
                agent_state=agent_state(obj, pods_of),
                intercepts=[
                    i
                    for i in all_intercepts
                    if i.spec.namespace == ns
                    and i.spec.workload == name
                    and i.spec.workload_kind == kind
                    and i.state != "removed"
                ],
                labels=labels,
            )
        )
    return sorted(result, key=lambda w: (w.namespace, w.name, w.kind))


def _kind(kind: str) -> WorkloadKind:
    if kind == "Deployment":
        return "Deployment"
    if kind == "ReplicaSet":
        return "ReplicaSet"
    return "StatefulSet"
