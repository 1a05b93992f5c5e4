"""Resolving what the user typed: a workload, its Service, a service port.

Pure functions over ``WorkloadInfo``; each failure is the typed error that
tells the user what to type instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import AmbiguousPort, NoMatchingService, SeveralServices, UnknownWorkload
from core.models import ServicePortInfo, ServiceRef, WorkloadInfo

__all__ = ["find_workload", "parse_port_flag", "pick_port", "pick_service"]


def find_workload(workloads: Sequence[WorkloadInfo], name: str, namespace: str) -> WorkloadInfo:
    """The workload called ``name`` in ``namespace`` (Deployments win over same-named others)."""
    order = {"Deployment": 0, "StatefulSet": 1, "ReplicaSet": 2}
    matches = sorted(
        (w for w in workloads if w.namespace == namespace and w.name == name),
        key=lambda w: order[w.kind],
    )
    if not matches:
        raise UnknownWorkload(
            name, namespace, sorted({w.name for w in workloads if w.namespace == namespace})
        )
    return matches[0]


def pick_service(workload: WorkloadInfo, service: str | None = None) -> ServiceRef:
    """The Service named ``service``, or the only one selecting the workload."""
    if not workload.services:
        raise NoMatchingService(workload.name, workload.namespace)
    if service:
        for ref in workload.services:
            if ref.name == service:
                return ref
        raise NoMatchingService(
            workload.name,
            workload.namespace,
            service=service,
            available=[s.name for s in workload.services],
        )
    if len(workload.services) > 1:
        raise SeveralServices(workload.name, [s.name for s in workload.services])
    return workload.services[0]


def pick_port(service: ServiceRef, port: str | None = None) -> ServicePortInfo:
    """The service port named or numbered ``port``, or the only one."""
    labels = [p.label for p in service.ports]
    if port:
        for p in service.ports:
            if port == p.name or port == str(p.port):
                return p
        raise AmbiguousPort(service.name, labels, asked=port)
    if len(service.ports) != 1:
        raise AmbiguousPort(service.name, labels)
    return service.ports[0]


def parse_port_flag(value: str | None) -> tuple[int, str | None]:
    """``--port LOCAL[:SVCPORT]`` -> (local port, service port name/number or None).

    Without ``--port`` the local port is 8080.
    """
    if not value:
        return 8080, None
    local, _, svc = value.partition(":")
    try:
        number = int(local)
    except ValueError:
        raise ValueError(f"--port {value!r}: the local port must be a number (e.g. 8080:http)")
    if not 0 < number < 65536:
        raise ValueError(f"--port {value!r}: the local port must be between 1 and 65535")
    return number, (svc or None)
