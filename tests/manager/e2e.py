"""Helpers for the manager's end-to-end tests against the sandbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from core.kube import Kube
from tests.sandbox.helpers import wait_for as sandbox_wait_for

T = TypeVar("T")


def wait_for(condition: Callable[[], T], *, timeout: float = 60.0, what: str = "") -> T:
    """``tests.sandbox.helpers.wait_for`` with the longer deadline and the slower polling
    of the manager's rollouts (each poll reads through the API)."""
    return sandbox_wait_for(condition, timeout=timeout, what=what, interval=0.1)


def app_template(labels: dict[str, str], port_name: str = "http") -> dict[str, Any]:
    return {
        "metadata": {"labels": labels},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "waylay/demo-http-echo",
                    "env": [{"name": "PORT", "value": "8080"}],
                    "ports": [{"name": port_name, "containerPort": 8080}],
                    "readinessProbe": {
                        "httpGet": {"path": "/healthz", "port": port_name},
                        "periodSeconds": 1,
                    },
                }
            ]
        },
    }


def workload(kind: str, name: str, ns: str, replicas: int = 2) -> dict[str, Any]:
    labels = {"app": name}
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": labels},
        "template": app_template(labels),
    }
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def service(name: str, ns: str, target: int | str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "web", "port": 8000, "targetPort": target, "protocol": "TCP"}],
        },
    }


SNAPSHOT_KINDS = [
    ("v1", "Namespace"),
    ("v1", "ServiceAccount"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "StatefulSet"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
    ("networking.k8s.io/v1", "Ingress"),
]


def snapshot(kube: Kube) -> dict[tuple[str, str, str], Any]:
    """Every object (but Pods, Events and Endpoints, which churn) with what matters of it.

    Pods are compared by their count and containers per namespace: rolled pods
    get new names, but none may keep an agent.
    """
    out: dict[tuple[str, str, str], Any] = {}
    for api, kind in SNAPSHOT_KINDS:
        for obj in kube.list(api, kind)[0]:
            meta = obj["metadata"]
            spec = obj.get("spec") or {}
            content: Any = None
            if kind == "Service":
                content = (spec.get("ports"), meta.get("annotations"))
            elif kind in ("Deployment", "StatefulSet", "ReplicaSet"):
                content = (spec.get("template"), spec.get("replicas"))
            elif kind in ("ConfigMap", "Secret"):
                content = obj.get("data")
            elif kind == "Ingress":
                content = spec
            out[(kind, meta.get("namespace", ""), meta["name"])] = content
    for pod in kube.list("v1", "Pod")[0]:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        key = ("Pods", pod["metadata"]["namespace"], "")
        names = tuple(c["name"] for c in pod["spec"]["containers"])
        out.setdefault(key, []).append(names)
    for key, value in out.items():
        if key[0] == "Pods":
            value.sort()
    return out
