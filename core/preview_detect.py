"""Ingress detection: propose defaults for the four preview prompts.

Pure functions on Service and Ingress dicts (as the API returns them), and one
async ``detect_defaults`` that lists them through ``core.kube``.

- **ingress host**: the cluster's ingress controller Service as
  ``name.namespace``. Candidates are Services with an HTTP(S) port (named
  ``https``/``http`` or numbered 443/80); LoadBalancer Services come first,
  then well-known controller names (ingress-nginx, traefik, haproxy, contour/
  envoy, ...), then any Service whose name says ``ingress``.
- **L5 hostname**: the host of an Ingress rule (or default backend) in the
  intercepted Service's namespace that routes to that Service; exact hosts
  only (a ``*.wildcard`` names no single host). Else the ingress host.
- **TLS and port**: HTTPS (the ``https``/443 port) when the Ingress that
  routes there lists the hostname under ``spec.tls``, or when no Ingress
  routes to the Service and the controller has an HTTPS port; otherwise
  HTTP (``http``/80).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import anyio

from core.errors import KubeApiError, RbacDenied
from core.kube import Kube
from core.preview_models import PreviewDefaults

__all__ = [
    "WELL_KNOWN_CONTROLLERS",
    "IngressCandidate",
    "IngressRoute",
    "detect_defaults",
    "ingress_candidates",
    "propose_defaults",
    "routes_to_service",
]

Obj = dict[str, Any]

WELL_KNOWN_CONTROLLERS = (
    "ingress-nginx-controller",
    "nginx-ingress-controller",
    "nginx-ingress",
    "ingress-nginx",
    "traefik",
    "haproxy-ingress",
    "haproxy-kubernetes-ingress",
    "kubernetes-ingress",
    "contour-envoy",
    "envoy",
    "contour",
    "kong-proxy",
    "istio-ingressgateway",
    "ingress",
)
"""Service names that ingress controllers ship with, most specific first."""


@dataclass(frozen=True)
class IngressCandidate:
    """An ingress controller Service and its HTTP(S) ports."""

    name: str
    namespace: str
    load_balancer: bool
    https_port: int | None
    http_port: int | None

    @property
    def host(self) -> str:
        return f"{self.name}.{self.namespace}"


@dataclass(frozen=True)
class IngressRoute:
    """An Ingress rule that sends traffic to the intercepted Service."""

    ingress: str
    hostname: str
    """Empty for a rule without a host (it matches any)."""
    tls: bool
    """The Ingress lists ``hostname`` under ``spec.tls``."""


def _web_ports(service: Obj) -> tuple[int | None, int | None]:
    https = http = None
    ports = (service.get("spec") or {}).get("ports") or []
    for named in (True, False):
        for port in ports:
            if str(port.get("protocol", "TCP")).upper() != "TCP":
                continue
            name, number = str(port.get("name", "")).lower(), port.get("port")
            if not isinstance(number, int):
                continue
            is_https = name == "https" if named else number == 443
            is_http = name == "http" if named else number == 80
            if is_https and https is None:
                https = number
            elif is_http and http is None:
                http = number
    return https, http


def _rank(candidate: IngressCandidate) -> tuple[int, int, str, str]:
    if candidate.load_balancer:
        tier = 0
    elif candidate.name in WELL_KNOWN_CONTROLLERS:
        tier = 1
    else:
        tier = 2
    known = (
        WELL_KNOWN_CONTROLLERS.index(candidate.name)
        if candidate.name in WELL_KNOWN_CONTROLLERS
        else len(WELL_KNOWN_CONTROLLERS)
    )
    return (tier, known, candidate.namespace, candidate.name)


def ingress_candidates(services: Iterable[Obj]) -> list[IngressCandidate]:
    """Ingress controller Services, best first (see the module docstring)."""
    found: list[IngressCandidate] = []
    for service in services:
        meta, spec = service.get("metadata") or {}, service.get("spec") or {}
        name, namespace = str(meta.get("name", "")), str(meta.get("namespace", "default"))
        https, http = _web_ports(service)
        if https is None and http is None:
            continue
        load_balancer = spec.get("type") == "LoadBalancer"
        if not (load_balancer or name in WELL_KNOWN_CONTROLLERS or "ingress" in name):
            continue
        found.append(IngressCandidate(name, namespace, load_balancer, https, http))
    return sorted(found, key=_rank)


def _names_service(backend: Obj | None, service: str) -> bool:
    return bool(backend) and ((backend or {}).get("service") or {}).get("name") == service


def routes_to_service(ingresses: Iterable[Obj], namespace: str, service: str) -> list[IngressRoute]:
    """The Ingress rules in ``namespace`` whose backend is ``service``, exact hosts first."""
    routes: list[IngressRoute] = []
    for ingress in ingresses:
        meta, spec = ingress.get("metadata") or {}, ingress.get("spec") or {}
        if meta.get("namespace", namespace) != namespace:
            continue
        tls_hosts = {str(h).lower() for t in spec.get("tls") or [] for h in t.get("hosts") or []}
        name = str(meta.get("name", ""))
        hosts: list[str] = []
        for rule in spec.get("rules") or []:
            paths = (rule.get("http") or {}).get("paths") or []
            if any(_names_service(p.get("backend"), service) for p in paths):
                hosts.append(str(rule.get("host", "")).lower())
        if _names_service(spec.get("defaultBackend"), service):
            # The default backend serves every host this Ingress names that
            # no path claims; prefer its TLS hosts, then the rules' hosts.
            hosts.extend(sorted(tls_hosts))
            hosts.extend(str(r.get("host", "")).lower() for r in spec.get("rules") or [])
            hosts.append("")
        for host in dict.fromkeys(hosts):
            if host.startswith("*"):
                continue
            routes.append(IngressRoute(name, host, bool(host) and host in tls_hosts))
    return sorted(routes, key=lambda r: (not r.hostname, not r.tls, r.ingress))


def propose_defaults(
    services: Iterable[Obj], ingresses: Iterable[Obj], namespace: str, service: str
) -> PreviewDefaults | None:
    """Defaults for a preview of ``service`` in ``namespace``; None without an ingress."""
    candidates = ingress_candidates(services)
    if not candidates:
        return None
    ingress = candidates[0]
    routes = routes_to_service(ingresses, namespace, service)
    route = routes[0] if routes else None
    if route is not None:
        tls = route.tls and ingress.https_port is not None
    else:
        tls = ingress.https_port is not None
    if ingress.http_port is None:
        tls = True
    port = ingress.https_port if tls else ingress.http_port
    assert port is not None
    hostname = route.hostname if route and route.hostname else ingress.host
    why = f"controller Service {ingress.host}" + (
        f", Ingress {namespace}/{route.ingress}" if route else ", no Ingress routes to it"
    )
    return PreviewDefaults(host=ingress.host, port=port, tls=tls, hostname=hostname, source=why)


async def detect_defaults(kube: Kube, namespace: str, service: str) -> PreviewDefaults | None:
    """List Services (all namespaces) and Ingresses (``namespace``) and propose defaults.

    Without permission to list Ingresses the hostname falls back to the
    ingress host; without permission to list Services cluster-wide, only the
    well-known controller namespaces are looked at.
    """

    def gather() -> tuple[list[Obj], list[Obj]]:
        try:
            services, _ = kube.list("v1", "Service")
        except RbacDenied:
            services = []
            for ns in ("ingress-nginx", "ingress", "traefik", "haproxy-controller", namespace):
                try:
                    services.extend(kube.list("v1", "Service", ns)[0])
                except (RbacDenied, KubeApiError):
                    continue
        try:
            ingresses, _ = kube.list("networking.k8s.io/v1", "Ingress", namespace)
        except (RbacDenied, KubeApiError):
            ingresses = []
        return services, ingresses

    services, ingresses = await anyio.to_thread.run_sync(gather, abandon_on_cancel=True)
    return propose_defaults(services, ingresses, namespace, service)
