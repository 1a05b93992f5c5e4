"""Where the API server dials a webhook that names a Service.

kube-apiserver dials a webhook Service at its clusterIP by default, and with
``--enable-aggregator-routing`` straight at one ready endpoint. The sandbox
does the first whenever its Service proxy (``sandbox.services``) can listen on
the Service port, and the second when it cannot: an unprivileged process may
not bind ports below ``net.ipv4.ip_unprivileged_port_start`` (usually 1024),
and webhook Services conventionally use port 443.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Protocol

from sandbox.admission_call import ServiceReference
from sandbox.services import backends_for

__all__ = ["Routing", "ServiceRouter", "proxy_can_bind"]

Routing = Literal["auto", "cluster-ip", "endpoints"]

_UNPRIVILEGED_START = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")


class ObjectReader(Protocol):
    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None: ...


def proxy_can_bind(port: int) -> bool:
    """Can this process listen on ``port`` (so the Service proxy serves it)?"""
    if os.geteuid() == 0:
        return True
    try:
        start = int(_UNPRIVILEGED_START.read_text().strip())
    except (OSError, ValueError):
        start = 1024
    return port >= start


class ServiceRouter:
    """``ServiceReference -> (host, port)``; raises ``LookupError`` saying why not."""

    def __init__(self, store: ObjectReader, routing: Routing = "auto") -> None:
        self.store = store
        self.routing = routing

    def __call__(self, ref: ServiceReference) -> tuple[str, int]:
        svc = self.store.get("services", ref.namespace, ref.name)
        if svc is None:
            raise LookupError(f'service "{ref.name}" not found')
        spec = svc.get("spec") or {}
        ports = [p for p in spec.get("ports") or [] if p.get("port") == ref.port]
        if not ports:
            raise LookupError(f'service "{ref.namespace}/{ref.name}" has no port {ref.port}')
        cluster_ip = spec.get("clusterIP")
        headless = not cluster_ip or cluster_ip == "None"
        routing = self.routing
        if routing == "auto":
            routing = "cluster-ip" if proxy_can_bind(ref.port) and not headless else "endpoints"
        if routing == "cluster-ip":
            if headless:
                raise LookupError(f'service "{ref.namespace}/{ref.name}" has no clusterIP')
            return str(cluster_ip), ref.port
        backends = backends_for(self.store, svc, ports[0])
        if not backends:
            raise LookupError(f'no endpoints available for service "{ref.name}"')
        return backends[0]
