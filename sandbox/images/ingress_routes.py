"""Ingress routing, as the Ingress API defines it (pure functions).

A request's Host picks the rules (an exact host beats a ``*.wildcard``, which
beats rules with no host); among their paths the longest match wins, ``Exact``
before ``Prefix`` at the same length. ``Prefix`` matches whole path elements
(``/foo`` matches ``/foo`` and ``/foo/bar``, not ``/foobar``);
``ImplementationSpecific`` is treated as ``Prefix``. With no match, an
Ingress's ``defaultBackend`` serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Backend", "host_matches", "path_matches", "resolve_service", "route"]

Obj = dict[str, Any]


@dataclass(frozen=True)
class Backend:
    namespace: str
    service: str
    port: int | str
    """A Service port number or name."""
    ingress: str = ""


def host_matches(rule_host: str, host: str) -> int:
    """0: no; 1: rule has no host; 2: wildcard; 3: exact."""
    if not rule_host:
        return 1
    if rule_host == host:
        return 3
    if rule_host.startswith("*."):
        suffix = rule_host[1:]
        head = host[: -len(suffix)] if host.endswith(suffix) else ""
        return 2 if head and "." not in head else 0
    return 0


def path_matches(kind: str, rule_path: str, path: str) -> bool:
    rule_path = rule_path or "/"
    if kind == "Exact":
        return path == rule_path
    if rule_path == "/":
        return True
    trimmed = rule_path.rstrip("/")
    return path == trimmed or path.startswith(trimmed + "/")


def _backend(namespace: str, spec: Obj, ingress: str) -> Backend | None:
    service = spec.get("service") or {}
    port = service.get("port") or {}
    value = port.get("number") if port.get("number") is not None else port.get("name")
    if not service.get("name") or value is None:
        return None
    return Backend(namespace, str(service["name"]), value, ingress)


def route(ingresses: list[Obj], host: str, path: str) -> Backend | None:
    """The backend for ``host`` and ``path``, or ``None``."""
    host = host.split(":", 1)[0].lower()
    best: tuple[int, int, int, Backend] | None = None
    default: Backend | None = None
    for ingress in ingresses:
        meta, spec = ingress["metadata"], ingress.get("spec") or {}
        namespace, name = str(meta.get("namespace", "")), str(meta["name"])
        if default is None and spec.get("defaultBackend"):
            default = _backend(namespace, spec["defaultBackend"], name)
        for rule in spec.get("rules") or []:
            host_rank = host_matches(str(rule.get("host", "")).lower(), host)
            if not host_rank:
                continue
            for item in (rule.get("http") or {}).get("paths") or []:
                kind = str(item.get("pathType", "ImplementationSpecific"))
                rule_path = str(item.get("path", "/"))
                if not path_matches(kind, rule_path, path):
                    continue
                backend = _backend(namespace, item.get("backend") or {}, name)
                if backend is None:
                    continue
                rank = (host_rank, len(rule_path.rstrip("/")), 1 if kind == "Exact" else 0)
                if best is None or rank > best[:3]:
                    best = (*rank, backend)
    return best[3] if best is not None else default


def resolve_service(service: Obj | None, port: int | str) -> tuple[str, int] | None:
    """``(clusterIP, port)`` of a Service port given by number or name."""
    if service is None:
        return None
    spec = service.get("spec") or {}
    ip = spec.get("clusterIP")
    if not ip or ip == "None":
        return None
    for item in spec.get("ports") or []:
        if item.get("port") == port or (item.get("name") and item.get("name") == port):
            return str(ip), int(item["port"])
    return None
