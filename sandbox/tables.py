"""Server-side printing: ``meta.k8s.io/v1 Table`` answers for ``kubectl get``.

kubectl asks for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and
prints the columns the server chooses. These are the columns of the real
server's printers (``pkg/printers/internalversion``) for the kinds the sandbox
serves; wide-only columns have priority 1. Other kinds get Name and Age.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sandbox.resources import ResourceType
from sandbox.selectors import format_label_selector

__all__ = ["human_age", "table", "wants_table"]

Obj = dict[str, Any]
Column = tuple[str, str, int]  # (name, type, priority)
Row = Callable[[Obj], list[Any]]


def wants_table(accept: str) -> str | None:
    """The Table apiVersion an ``Accept`` header asks for, or None."""
    for part in accept.split(","):
        params = dict(p.strip().split("=", 1) for p in part.split(";")[1:] if "=" in p)
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return f"meta.k8s.io/{params.get('v', 'v1')}"
    return None


def human_age(timestamp: str | None, now: datetime | None = None) -> str:
    """``kubectl``'s age format: ``45s``, ``3m12s``, ``5h``, ``2d3h``, ``120d``."""
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    seconds = max(int(((now or datetime.now(UTC)) - then).total_seconds()), 0)
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def _age(obj: Obj) -> str:
    return human_age(obj["metadata"].get("creationTimestamp"))


def _pod_status(pod: Obj) -> str:
    status = pod.get("status") or {}
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    reason = status.get("reason") or status.get("phase") or "Pending"
    for cs in status.get("initContainerStatuses") or []:
        state = cs.get("state") or {}
        if "terminated" in state and state["terminated"].get("exitCode", 0) != 0:
            return f"Init:{state['terminated'].get('reason') or 'Error'}"
        if "waiting" in state and state["waiting"].get("reason") not in (None, "PodInitializing"):
            return f"Init:{state['waiting']['reason']}"
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state:
            reason = state["terminated"].get("reason") or "Completed"
    return str(reason)


def _pod(pod: Obj) -> list[Any]:
    status = pod.get("status") or {}
    containers = (pod.get("spec") or {}).get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for cs in statuses if cs.get("ready"))
    restarts = sum(int(cs.get("restartCount", 0)) for cs in statuses)
    return [
        f"{ready}/{len(containers)}",
        _pod_status(pod),
        restarts,
        _age(pod),
        status.get("podIP") or "<none>",
        (pod.get("spec") or {}).get("nodeName") or "<none>",
    ]


def _containers(obj: Obj) -> list[Any]:
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = spec.get("containers") or []
    return [
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
        format_label_selector((obj.get("spec") or {}).get("selector")) or "<none>",
    ]


def _deployment(obj: Obj) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _age(obj),
        *_containers(obj),
    ]


def _replicaset(obj: Obj) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        spec.get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        _age(obj),
        *_containers(obj),
    ]


def _statefulset(obj: Obj) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        _age(obj),
        *_containers(obj)[:2],
    ]


def _ports(ports: list[Obj]) -> str:
    parts = []
    for p in ports:
        node = f":{p['nodePort']}" if p.get("nodePort") else ""
        parts.append(f"{p.get('port')}{node}/{p.get('protocol', 'TCP')}")
    return ",".join(parts) or "<none>"


def _service(obj: Obj) -> list[Any]:
    spec = obj.get("spec") or {}
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    external = ",".join(i.get("ip") or i.get("hostname", "") for i in ingress)
    if not external:
        external = spec.get("externalName") or (
            "<pending>" if spec.get("type") == "LoadBalancer" else "<none>"
        )
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))
    return [
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>",
        external,
        _ports(spec.get("ports") or []),
        _age(obj),
        selector or "<none>",
    ]


def _endpoints(obj: Obj) -> list[Any]:
    addresses = []
    for subset in obj.get("subsets") or []:
        for address in subset.get("addresses") or []:
            for port in subset.get("ports") or [{}]:
                suffix = f":{port['port']}" if "port" in port else ""
                addresses.append(f"{address.get('ip')}{suffix}")
    shown = ",".join(addresses[:3]) + (
        f" + {len(addresses) - 3} more..." if len(addresses) > 3 else ""
    )
    return [shown or "<none>", _age(obj)]


def _endpointslice(obj: Obj) -> list[Any]:
    ports = ",".join(str(p.get("port")) for p in obj.get("ports") or []) or "<unset>"
    ips = [a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
    shown = ",".join(ips[:3]) + (f" + {len(ips) - 3} more..." if len(ips) > 3 else "")
    return [obj.get("addressType", ""), ports, shown or "<unset>", _age(obj)]


def _namespace(obj: Obj) -> list[Any]:
    return [(obj.get("status") or {}).get("phase", "Active"), _age(obj)]


def _configmap(obj: Obj) -> list[Any]:
    return [len(obj.get("data") or {}) + len(obj.get("binaryData") or {}), _age(obj)]


def _secret(obj: Obj) -> list[Any]:
    return [obj.get("type", "Opaque"), len(obj.get("data") or {}), _age(obj)]


def _serviceaccount(obj: Obj) -> list[Any]:
    return [len(obj.get("secrets") or []), _age(obj)]


def _event(obj: Obj) -> list[Any]:
    involved = obj.get("involvedObject") or {}
    last = (
        obj.get("lastTimestamp") or obj.get("eventTime") or obj["metadata"].get("creationTimestamp")
    )
    return [
        human_age(str(last)[:19] + "Z" if last else None),
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        obj.get("message", ""),
    ]


def _ingress(obj: Obj) -> list[Any]:
    spec = obj.get("spec") or {}
    hosts = ",".join(r.get("host", "*") for r in spec.get("rules") or []) or "*"
    lb = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    address = ",".join(i.get("ip") or i.get("hostname", "") for i in lb)
    ports = "80, 443" if spec.get("tls") else "80"
    return [spec.get("ingressClassName") or "<none>", hosts, address, ports, _age(obj)]


def _lease(obj: Obj) -> list[Any]:
    return [(obj.get("spec") or {}).get("holderIdentity") or "<none>", _age(obj)]


def _binding(obj: Obj) -> list[Any]:
    ref = obj.get("roleRef") or {}
    return [f"{ref.get('kind', '')}/{ref.get('name', '')}", _age(obj)]


def _webhooks(obj: Obj) -> list[Any]:
    return [len(obj.get("webhooks") or []), _age(obj)]


def _default(obj: Obj) -> list[Any]:
    return [_age(obj)]


_S, _I = "string", "integer"
_WIDE_POD_TEMPLATE: list[Column] = [("Containers", _S, 1), ("Images", _S, 1), ("Selector", _S, 1)]

_PRINTERS: dict[str, tuple[list[Column], Row]] = {
    "pods": (
        [
            ("Ready", _S, 0),
            ("Status", _S, 0),
            ("Restarts", _I, 0),
            ("Age", _S, 0),
            ("IP", _S, 1),
            ("Node", _S, 1),
        ],
        _pod,
    ),
    "deployments.apps": (
        [
            ("Ready", _S, 0),
            ("Up-to-date", _I, 0),
            ("Available", _I, 0),
            ("Age", _S, 0),
            *_WIDE_POD_TEMPLATE,
        ],
        _deployment,
    ),
    "replicasets.apps": (
        [
            ("Desired", _I, 0),
            ("Current", _I, 0),
            ("Ready", _I, 0),
            ("Age", _S, 0),
            *_WIDE_POD_TEMPLATE,
        ],
        _replicaset,
    ),
    "statefulsets.apps": (
        [("Ready", _S, 0), ("Age", _S, 0), ("Containers", _S, 1), ("Images", _S, 1)],
        _statefulset,
    ),
    "services": (
        [
            ("Type", _S, 0),
            ("Cluster-IP", _S, 0),
            ("External-IP", _S, 0),
            ("Port(s)", _S, 0),
            ("Age", _S, 0),
            ("Selector", _S, 1),
        ],
        _service,
    ),
    "endpoints": ([("Endpoints", _S, 0), ("Age", _S, 0)], _endpoints),
    "endpointslices.discovery.k8s.io": (
        [("AddressType", _S, 0), ("Ports", _S, 0), ("Endpoints", _S, 0), ("Age", _S, 0)],
        _endpointslice,
    ),
    "namespaces": ([("Status", _S, 0), ("Age", _S, 0)], _namespace),
    "configmaps": ([("Data", _I, 0), ("Age", _S, 0)], _configmap),
    "secrets": ([("Type", _S, 0), ("Data", _I, 0), ("Age", _S, 0)], _secret),
    "serviceaccounts": ([("Secrets", _I, 0), ("Age", _S, 0)], _serviceaccount),
    "events": (
        [
            ("Last Seen", _S, 0),
            ("Type", _S, 0),
            ("Reason", _S, 0),
            ("Object", _S, 0),
            ("Message", _S, 0),
        ],
        _event,
    ),
    "ingresses.networking.k8s.io": (
        [("Class", _S, 0), ("Hosts", _S, 0), ("Address", _S, 0), ("Ports", _S, 0), ("Age", _S, 0)],
        _ingress,
    ),
    "leases.coordination.k8s.io": ([("Holder", _S, 0), ("Age", _S, 0)], _lease),
    "rolebindings.rbac.authorization.k8s.io": ([("Role", _S, 0), ("Age", _S, 0)], _binding),
    "clusterrolebindings.rbac.authorization.k8s.io": (
        [("Role", _S, 0), ("Age", _S, 0)],
        _binding,
    ),
    "mutatingwebhookconfigurations.admissionregistration.k8s.io": (
        [("Webhooks", _I, 0), ("Age", _S, 0)],
        _webhooks,
    ),
}


def table(rt: ResourceType, objects: list[Obj], api_version: str, list_meta: Obj) -> Obj:
    """A ``Table`` of ``objects`` with the columns kubectl shows for ``rt``."""
    columns, row = _PRINTERS.get(rt.key, ([("Age", _S, 0)], _default))
    name_last = rt.key == "events"  # kubectl shows events without their generated names
    name_column: Obj = {
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": "Name",
        "priority": 1 if name_last else 0,
    }
    definitions: list[Obj] = [
        {"name": title, "type": kind, "format": "", "description": title, "priority": priority}
        for title, kind, priority in columns
    ]
    definitions = [*definitions, name_column] if name_last else [name_column, *definitions]

    def cells(obj: Obj) -> list[Any]:
        values = row(obj)
        return (
            [*values, obj["metadata"]["name"]] if name_last else [obj["metadata"]["name"], *values]
        )

    rows = [
        {
            "cells": cells(obj),
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            },
        }
        for obj in objects
    ]
    return {
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": list_meta,
        "columnDefinitions": definitions,
        "rows": rows,
    }
