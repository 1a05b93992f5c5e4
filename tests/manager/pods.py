"""Pod and AdmissionReview builders shared by the manager tests."""

from __future__ import annotations

import json
from typing import Any

from core.protocol import AGENT_CONFIG_ANNOTATION, AgentConfig, TakeoverPort


def agent_config(*ports: TakeoverPort, kind: str = "Deployment") -> AgentConfig:
    return AgentConfig(
        workload_kind=kind,  # type: ignore[arg-type]
        workload_name="hello",
        namespace="demo",
        manager_address="placeholder:1",
        ports=list(ports),
    )


def named_port(name: str = "http", app_port: int = 8080) -> TakeoverPort:
    return TakeoverPort(
        service="hello",
        service_port=80,
        service_port_name="web",
        target_port_name=name,
        app_container="app",
        app_port=app_port,
        agent_port=9900,
    )


def numeric_port(app_port: int = 8080) -> TakeoverPort:
    return TakeoverPort(
        service="hello",
        service_port=80,
        app_container="app",
        app_port=app_port,
        agent_port=9901,
    )


def pod(
    config: AgentConfig | None = None,
    *,
    owner_kind: str | None = "ReplicaSet",
    annotations: dict[str, str] | None = None,
    containers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    ann = dict(annotations or {})
    if config is not None:
        ann[AGENT_CONFIG_ANNOTATION] = config.model_dump_json()
    meta: dict[str, Any] = {"generateName": "hello-abc-", "namespace": "demo", "annotations": ann}
    if owner_kind:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": owner_kind,
                "name": "hello-abc",
                "uid": "1234",
                "controller": True,
            }
        ]
    if containers is None:
        containers = [
            {
                "name": "app",
                "image": "demo/hello",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [
                    {"name": "GREETING", "value": "hi"},
                    {"name": "MESSAGE", "value": "$(GREETING) there $$(GREETING)"},
                    {
                        "name": "MEM",
                        "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}},
                    },
                ],
                "envFrom": [{"configMapRef": {"name": "settings"}}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                "livenessProbe": {"tcpSocket": {"port": "http"}},
            }
        ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": containers}}


def review(obj: dict[str, Any] | None, *, uid: str = "uid-1", op: str = "CREATE") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "demo",
            "operation": op,
            "object": obj,
            "dryRun": False,
        },
    }


def dumps(obj: Any) -> str:
    return json.dumps(obj)
