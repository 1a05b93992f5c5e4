"""Service addresses: ClusterIPs from the sandbox's loopback block, and node ports.

A Service keeps its ClusterIP for life (an update cannot change it); headless
Services (``clusterIP: None``) and ``ExternalName`` ones get none. NodePort
and LoadBalancer ports get a ``nodePort`` from 30000-32767. After a restart,
:meth:`ServiceAddresses.restore` marks the addresses already in use.
"""

from __future__ import annotations

from typing import Any

from sandbox.errors import ApiError
from sandbox.ipam import Ipam

__all__ = ["ServiceAddresses"]

Obj = dict[str, Any]

_NODE_PORT_FIRST = 30000
_NODE_PORTS = 2768  # 30000-32767


class ServiceAddresses:
    def __init__(self, ipam: Ipam) -> None:
        self.ipam = ipam
        self._next_node_port = _NODE_PORT_FIRST

    def restore(self, services: list[Obj]) -> None:
        """Reserve the ClusterIPs, LoadBalancer IPs and node ports of existing Services."""
        ips: list[str] = []
        ports: list[int] = []
        for svc in services:
            spec = svc.get("spec") or {}
            ips.extend(ip for ip in spec.get("clusterIPs") or [] if ip != "None")
            ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            ips.extend(i["ip"] for i in ingress if i.get("ip"))
            ports.extend(int(p["nodePort"]) for p in spec.get("ports") or [] if p.get("nodePort"))
        self.ipam.restore([], ips)
        if ports:
            self._next_node_port = self._after(max(ports))

    def assign(self, svc: Obj, old: Obj | None, *, dry_run: bool) -> None:
        """Fill in ``spec.clusterIP(s)`` and node ports (kept from ``old`` on update)."""
        spec = svc.setdefault("spec", {})
        if spec.get("type") == "ExternalName":
            return
        old_spec = (old or {}).get("spec") or {}
        if old is not None and old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
            spec["clusterIPs"] = old_spec.get("clusterIPs") or [old_spec["clusterIP"]]
        elif spec.get("clusterIP") == "None":
            spec["clusterIPs"] = ["None"]
        elif not dry_run:
            ip = self._cluster_ip(svc, spec.get("clusterIP"))
            spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            old_ports = {p.get("port"): p.get("nodePort") for p in old_spec.get("ports") or []}
            for port in spec.get("ports") or []:
                if not port.get("nodePort"):
                    port["nodePort"] = old_ports.get(port.get("port")) or self._node_port()

    def release(self, svc: Obj) -> None:
        for ip in (svc.get("spec") or {}).get("clusterIPs") or []:
            if ip != "None":
                self.ipam.release_service_ip(ip)

    def _cluster_ip(self, svc: Obj, wanted: str | None) -> str:
        if not wanted:
            return self.ipam.allocate_service_ip()
        if not self.ipam.reserve_service_ip(wanted):
            raise ApiError(
                422,
                "Invalid",
                f'Service "{svc["metadata"].get("name", "")}" is invalid: spec.clusterIP: '
                f"Invalid value: {wanted!r}: provided IP is already allocated or outside the "
                f"service range {self.ipam.service_cidr}",
            )
        return wanted

    def _node_port(self) -> int:
        port = self._next_node_port
        self._next_node_port = self._after(port)
        return port

    @staticmethod
    def _after(port: int) -> int:
        return _NODE_PORT_FIRST + (port + 1 - _NODE_PORT_FIRST) % _NODE_PORTS
