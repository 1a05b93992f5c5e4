"""The objects a fresh sandbox holds before anyone talks to it.

Like kube-apiserver's bootstrap policy: the three default namespaces with their
``default`` ServiceAccount, and the RBAC that gives the kubeconfig users their
powers:

- ``cluster-admin`` (everything), bound to group ``system:masters`` (``admin``);
- ``system:discovery`` and ``system:public-info-viewer`` (``/api``, ``/apis``,
  ``/version``, ``/openapi``, health), bound to every authenticated user;
- ``waylay-sandbox:developer``: get/list/watch on every resource the sandbox
  serves (and their status/scale), ``pods/log``, and ``pods/portforward``;
  bound to user ``developer``.

``bootstrap_objects()`` returns ``(resource key, object)`` pairs in creation order.
"""

from __future__ import annotations

from typing import Any

from sandbox.auth import AUTHENTICATED, DEVELOPER, MASTERS
from sandbox.resources import RESOURCES

__all__ = ["DEFAULT_NAMESPACES", "DEVELOPER_ROLE", "bootstrap_objects", "developer_rules"]

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public")
DEVELOPER_ROLE = "waylay-sandbox:developer"

_RBAC = "rbac.authorization.k8s.io"
_RBAC_V1 = f"{_RBAC}/v1"
_BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
_READ = ["get", "list", "watch"]

_DISCOVERY_URLS = [
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/openapi",
    "/openapi/*",
    "/readyz",
    "/version",
    "/version/",
]
_PUBLIC_INFO_URLS = ["/healthz", "/livez", "/readyz", "/version", "/version/"]


def developer_rules() -> list[dict[str, Any]]:
    """Read-only on every served resource, plus ``pods/log`` and ``pods/portforward``."""
    by_group: dict[str, list[str]] = {}
    for res in RESOURCES:
        names = by_group.setdefault(res.group, [])
        names.append(res.plural)
        readable = [sub for sub in res.subresources if sub in ("status", "scale")]
        names.extend(f"{res.plural}/{sub}" for sub in readable)
    rules: list[dict[str, Any]] = [
        {"apiGroups": [group], "resources": names, "verbs": list(_READ)}
        for group, names in by_group.items()
    ]
    rules.append({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]})
    # The WebSocket port-forward is a GET; kubectl's SPDY one is a POST (create).
    rules.append({"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["get", "create"]})
    return rules


def _meta(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, **extra}


def _cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": _RBAC_V1,
        "kind": "ClusterRole",
        "metadata": _meta(name, labels=dict(_BOOTSTRAP_LABELS)),
        "rules": rules,
    }


def _cluster_role_binding(name: str, role: str, subjects: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": _RBAC_V1,
        "kind": "ClusterRoleBinding",
        "metadata": _meta(name, labels=dict(_BOOTSTRAP_LABELS)),
        "roleRef": {"apiGroup": _RBAC, "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    }


def _group(name: str) -> dict[str, Any]:
    return {"apiGroup": _RBAC, "kind": "Group", "name": name}


def _user(name: str) -> dict[str, Any]:
    return {"apiGroup": _RBAC, "kind": "User", "name": name}


def bootstrap_objects() -> list[tuple[str, dict[str, Any]]]:
    """Namespaces, default ServiceAccounts, then ClusterRoles and their bindings."""
    objects: list[tuple[str, dict[str, Any]]] = []
    for ns in DEFAULT_NAMESPACES:
        objects.append(
            (
                "namespaces",
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": _meta(ns, labels={"kubernetes.io/metadata.name": ns}),
                },
            )
        )
    for ns in DEFAULT_NAMESPACES:
        objects.append(
            (
                "serviceaccounts",
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": _meta("default", namespace=ns),
                },
            )
        )
    roles = [
        _cluster_role(
            "cluster-admin",
            [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        ),
        _cluster_role("system:discovery", [{"nonResourceURLs": _DISCOVERY_URLS, "verbs": ["get"]}]),
        _cluster_role(
            "system:public-info-viewer",
            [{"nonResourceURLs": _PUBLIC_INFO_URLS, "verbs": ["get"]}],
        ),
        _cluster_role(DEVELOPER_ROLE, developer_rules()),
    ]
    bindings = [
        _cluster_role_binding("cluster-admin", "cluster-admin", [_group(MASTERS)]),
        _cluster_role_binding("system:discovery", "system:discovery", [_group(AUTHENTICATED)]),
        _cluster_role_binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            [_group(AUTHENTICATED), _group("system:unauthenticated")],
        ),
        _cluster_role_binding(DEVELOPER_ROLE, DEVELOPER_ROLE, [_user(DEVELOPER.name)]),
    ]
    objects.extend((f"clusterroles.{_RBAC}", role) for role in roles)
    objects.extend((f"clusterrolebindings.{_RBAC}", b) for b in bindings)
    return objects
