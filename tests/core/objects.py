"""Schema-complete Kubernetes objects for core's tests."""

from __future__ import annotations

from typing import Any

from core.inventory import AGENT_CONTAINER
from core.protocol import AGENT_CONFIG_ANNOTATION


def template(app: str, *, agent_config: bool = False) -> dict[str, Any]:
    annotations = {AGENT_CONFIG_ANNOTATION: "{}"} if agent_config else {}
    return {
        "metadata": {"labels": {"app": app}, "annotations": annotations},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "demo/echo",
                    "ports": [{"name": "http", "containerPort": 8080}],
                }
            ]
        },
    }


def workload(
    kind: str,
    name: str,
    ns: str = "demo",
    *,
    replicas: int = 1,
    agent_config: bool = False,
    owner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if owner is not None:
        meta["ownerReferences"] = [owner_ref(owner)]
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name if owner is None else owner["metadata"]["name"]}},
        "template": template(
            name if owner is None else owner["metadata"]["name"], agent_config=agent_config
        ),
    }
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}


def owner_ref(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }


def pod(name: str, owner: dict[str, Any], *, agent: bool = False) -> dict[str, Any]:
    containers = [{"name": "app", "image": "demo/echo"}]
    if agent:
        containers.append({"name": AGENT_CONTAINER, "image": "waylay/agent"})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": owner["metadata"]["namespace"],
            "labels": {"app": owner["metadata"]["name"]},
            "ownerReferences": [owner_ref(owner)],
        },
        "spec": {"containers": containers},
    }


def service(
    name: str, app: str, ns: str = "demo", ports: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {"app": app},
            "ports": ports or [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }
