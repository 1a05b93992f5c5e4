"""What a Service's Endpoints and EndpointSlices should hold, as pure functions.

Ported from ``pkg/controller/endpoint`` and ``pkg/controller/endpointslice``:

- a pod is in a Service's endpoints when the selector matches, it has a pod
  IP and it is not being deleted (terminating pods stay in slices, marked);
- ready pods are ``addresses``, the others ``notReadyAddresses`` (all ready
  when ``publishNotReadyAddresses``);
- each Service port is resolved per pod: a numeric ``targetPort`` as is, a
  named one to that pod's container port of that name and protocol; a pod
  without such a port is left out of that port only;
- Endpoints subsets group addresses that offer the same set of ports
  (``RepackSubsets``); slices group endpoints the same way, at most 100 each;
- a headless Service (``clusterIP: None``) without ports still lists its pods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._meta import Obj, is_ready, is_terminating

__all__ = [
    "HEADLESS_LABEL",
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "MAX_ENDPOINTS_PER_SLICE",
    "SERVICE_NAME_LABEL",
    "desired_slices",
    "endpoints_labels",
    "endpoints_subsets",
    "find_port",
    "in_endpoints",
    "slice_labels",
]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
MAX_ENDPOINTS_PER_SLICE = 100

PortKey = tuple[tuple[str, int, str, str], ...]


def find_port(pod: Mapping[str, Any], service_port: Mapping[str, Any]) -> int | None:
    """``podutil.FindPort``: the pod's port for a Service port, or None if it has none."""
    target = service_port.get("targetPort", service_port.get("port"))
    protocol = service_port.get("protocol") or "TCP"
    if isinstance(target, int) and not isinstance(target, bool):
        return target or int(service_port.get("port") or 0) or None
    if isinstance(target, str):
        if target.isdigit():
            return int(target)
        for container in (pod.get("spec") or {}).get("containers") or []:
            for port in container.get("ports") or []:
                if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                    return int(port["containerPort"])
    return None


def in_endpoints(pod: Mapping[str, Any], *, include_terminating: bool) -> bool:
    """``ShouldPodBeInEndpoints``: has an IP, not finished, not deleted (unless included)."""
    status = pod.get("status") or {}
    if not status.get("podIP") and not status.get("podIPs"):
        return False
    if not include_terminating and is_terminating(pod):
        return False
    phase = status.get("phase")
    policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
    if policy == "Never":
        return phase not in ("Failed", "Succeeded")
    if policy == "OnFailure":
        return phase != "Succeeded"
    return True


def _is_headless(service: Mapping[str, Any]) -> bool:
    return (service.get("spec") or {}).get("clusterIP") == "None"


def _target_ref(pod: Mapping[str, Any]) -> Obj:
    meta = pod["metadata"]
    return {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]}


def _hostname(pod: Mapping[str, Any], service: Mapping[str, Any]) -> str | None:
    """``ShouldSetHostname``: the pod's hostname when its subdomain is this Service."""
    spec = pod.get("spec") or {}
    same_ns = pod["metadata"].get("namespace") == service["metadata"].get("namespace")
    if spec.get("hostname") and spec.get("subdomain") == service["metadata"]["name"] and same_ns:
        return str(spec["hostname"])
    return None


def _pod_ports(pod: Mapping[str, Any], service: Mapping[str, Any]) -> list[Obj]:
    ports: list[Obj] = []
    for sp in (service.get("spec") or {}).get("ports") or []:
        number = find_port(pod, sp)
        if number is None:
            continue
        port: Obj = {"name": sp.get("name") or "", "port": number}
        port["protocol"] = sp.get("protocol") or "TCP"
        if sp.get("appProtocol"):
            port["appProtocol"] = sp["appProtocol"]
        ports.append(port)
    return ports


def _port_key(ports: list[Obj]) -> PortKey:
    return tuple(
        sorted((p["name"], p["port"], p["protocol"], p.get("appProtocol", "")) for p in ports)
    )


def _pod_ip(pod: Mapping[str, Any]) -> str:
    status = pod.get("status") or {}
    ips = status.get("podIPs") or []
    return str(status.get("podIP") or (ips[0].get("ip") if ips else ""))


def _ip_sort_key(ip: str) -> tuple[int, ...] | tuple[str]:
    try:
        return tuple(int(part) for part in ip.split("."))
    except ValueError:
        return (ip,)


def endpoints_subsets(service: Mapping[str, Any], pods: list[Obj]) -> list[Obj]:
    """The ``subsets`` of the Service's Endpoints object (``pods`` already selected)."""
    spec = service.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    service_ports = spec.get("ports") or []
    groups: dict[PortKey, tuple[list[Obj], list[Obj], list[Obj]]] = {}
    for pod in pods:
        if not in_endpoints(pod, include_terminating=publish):
            continue
        address: Obj = {"ip": _pod_ip(pod)}
        hostname = _hostname(pod, service)
        if hostname:
            address["hostname"] = hostname
        if (pod.get("spec") or {}).get("nodeName"):
            address["nodeName"] = pod["spec"]["nodeName"]
        address["targetRef"] = _target_ref(pod)
        ports = _pod_ports(pod, service)
        if not ports and (service_ports or not _is_headless(service)):
            continue  # offers none of the Service's ports; headless without ports lists all
        key = _port_key(ports)
        for port in ports:
            if not port["name"]:
                del port["name"]  # omitempty in v1.EndpointPort
        ready, not_ready, _ = groups.setdefault(key, ([], [], ports))
        (ready if publish or is_ready(pod) else not_ready).append(address)
    subsets: list[Obj] = []
    for ready, not_ready, ports in groups.values():
        subset: Obj = {}
        if ready:
            subset["addresses"] = sorted(ready, key=lambda a: _ip_sort_key(a["ip"]))
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=lambda a: _ip_sort_key(a["ip"]))
        if ports:
            subset["ports"] = sorted(ports, key=lambda p: (p.get("name", ""), p["port"]))
        subsets.append(subset)

    def first_ip(subset: Obj) -> tuple[int, ...] | tuple[str]:
        addrs = subset.get("addresses") or subset.get("notReadyAddresses") or [{"ip": ""}]
        return _ip_sort_key(addrs[0]["ip"])

    return sorted(subsets, key=first_ip)


def endpoints_labels(service: Mapping[str, Any]) -> dict[str, str]:
    """The Service's labels, with the headless label set or removed."""
    labels = dict(service["metadata"].get("labels") or {})
    if _is_headless(service):
        labels[HEADLESS_LABEL] = ""
    else:
        labels.pop(HEADLESS_LABEL, None)
    return labels


def slice_labels(service: Mapping[str, Any]) -> dict[str, str]:
    labels = endpoints_labels(service)
    labels[SERVICE_NAME_LABEL] = service["metadata"]["name"]
    labels[MANAGED_BY_LABEL] = MANAGED_BY
    return labels


def _slice_endpoint(pod: Mapping[str, Any], service: Mapping[str, Any], publish: bool) -> Obj:
    terminating = is_terminating(pod)
    serving = publish or is_ready(pod)
    ready = serving and (publish or not terminating)
    endpoint: Obj = {
        "addresses": [_pod_ip(pod)],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
    }
    hostname = _hostname(pod, service)
    if hostname:
        endpoint["hostname"] = hostname
    endpoint["targetRef"] = _target_ref(pod)
    if (pod.get("spec") or {}).get("nodeName"):
        endpoint["nodeName"] = pod["spec"]["nodeName"]
    return endpoint


def desired_slices(
    service: Mapping[str, Any], pods: list[Obj]
) -> list[tuple[list[Obj], list[Obj]]]:
    """(ports, endpoints) of each EndpointSlice the Service should have.

    Never empty: a Service with no endpoints keeps one placeholder slice.
    """
    spec = service.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    service_ports = spec.get("ports") or []
    groups: dict[PortKey, tuple[list[Obj], list[Obj]]] = {}
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        if not in_endpoints(pod, include_terminating=True):
            continue
        ports = _pod_ports(pod, service)
        if not ports and service_ports:
            continue
        key = _port_key(ports)
        groups.setdefault(key, (sorted(ports, key=lambda p: (p["name"], p["port"])), []))[1].append(
            _slice_endpoint(pod, service, publish)
        )
    slices: list[tuple[list[Obj], list[Obj]]] = []
    for ports, endpoints in groups.values():
        for start in range(0, len(endpoints), MAX_ENDPOINTS_PER_SLICE):
            slices.append((ports, endpoints[start : start + MAX_ENDPOINTS_PER_SLICE]))
    return slices or [([], [])]
