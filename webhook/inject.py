"""The agent injector: a pure function from an AdmissionReview to a response.

A pod gets the traffic agent when all of these hold:

- the injection policy allows it (``OnDemand``: the pod carries the agent-config
  annotation; ``WhenEnabled``: it also says ``waylay.dev/inject: enabled``;
  ``Never``: nothing is ever injected);
- it does not opt out with ``waylay.dev/inject: disabled``;
- its controller is a ReplicaSet (a Deployment's or a bare one) or a StatefulSet;
- it has no agent yet (reinvocation is a no-op).

Port takeover needs neither ``NET_ADMIN`` nor an init container: a named
``targetPort`` is renamed on the app container to ``wl-<name>`` (probes that
name it follow) and the agent declares the original name; for a numeric
``targetPort`` the agent declares :func:`agent_port_name` and the manager
repoints the Service at it.

Anything odd (no containers, unknown container, unparsable config) lets the pod
through unchanged with a warning: the webhook never blocks a workload.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from core.protocol import (
    AGENT_CONFIG_ANNOTATION,
    AGENT_CONTAINER,
    INJECT_ANNOTATION,
    AgentConfig,
    TakeoverPort,
)
from webhook.review import AdmissionResponse, AdmissionReview

INJECTABLE_OWNERS = frozenset({"ReplicaSet", "StatefulSet"})
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
_VAR_REF = re.compile(r"(\$+)\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_MAX_PORT_NAME = 15


class InjectionPolicy(StrEnum):
    ON_DEMAND = "OnDemand"
    WHEN_ENABLED = "WhenEnabled"
    NEVER = "Never"


class AgentResources(BaseModel):
    """Requests and limits of the agent container."""

    requests: dict[str, str] = Field(default_factory=lambda: {"cpu": "10m", "memory": "32Mi"})
    limits: dict[str, str] = Field(default_factory=lambda: {"cpu": "500m", "memory": "128Mi"})


RESTRICTED_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}
"""Passes the "restricted" Pod Security Standard at container level."""


def renamed_port_name(name: str) -> str:
    """``wl-<name>``, cut to the 15 characters a port name may have."""
    return ("wl-" + name)[:_MAX_PORT_NAME].rstrip("-")


def agent_port_name(port: TakeoverPort) -> str:
    """The port name the agent declares for one takeover.

    A named ``targetPort`` keeps its name (the Service resolves it to the
    agent); a numeric one gets ``wla-<app port>``, which the manager writes
    into the Service's ``targetPort``.
    """
    return port.target_port_name or f"wla-{port.app_port}"


def build_response(
    *,
    review: AdmissionReview,
    manager_address: str,
    agent_image: str,
    policy: InjectionPolicy = InjectionPolicy.ON_DEMAND,
    resources: AgentResources | None = None,
) -> AdmissionResponse:
    """Answer one review: allowed always, with a JSON patch when injecting."""
    request = review.request
    if request is None:
        raise ValueError("an AdmissionReview without a request cannot be answered")
    allow = AdmissionResponse(uid=request.uid, allowed=True)
    pod = request.object
    if request.resource.resource != "pods" or request.operation != "CREATE" or pod is None:
        return allow
    reason = _skip_reason(pod, policy)
    if reason is not None:
        return allow if reason == "" else _warn(allow, reason)
    try:
        config = AgentConfig.model_validate_json(_annotations(pod)[AGENT_CONFIG_ANNOTATION])
    except ValidationError as e:
        first = e.errors()[0]
        return _warn(allow, f"annotation {AGENT_CONFIG_ANNOTATION} is invalid: {first['msg']}")
    config = config.model_copy(update={"manager_address": manager_address})
    original: list[Any] = pod["spec"]["containers"]  # a non-empty list: _skip_reason saw it
    edited = [copy.deepcopy(c) if isinstance(c, dict) else c for c in original]
    agent, warnings = _inject(
        [c for c in edited if isinstance(c, dict)],
        config,
        agent_image,
        resources or AgentResources(),
    )
    if agent is None:
        return _warn(allow, "; ".join(warnings))
    # Whole containers replaced, not a diff of the pod: cheaper, and just as exact.
    ops: list[dict[str, Any]] = [
        {"op": "replace", "path": f"/spec/containers/{i}", "value": new}
        for i, (old, new) in enumerate(zip(original, edited, strict=True))
        if old != new
    ]
    ops.append({"op": "add", "path": "/spec/containers/-", "value": agent})
    return AdmissionResponse(
        uid=request.uid,
        allowed=True,
        patch=base64.b64encode(json.dumps(ops).encode()).decode(),
        patchType="JSONPatch",
        warnings=[f"waylay: {w}" for w in warnings] or None,
    )


def _annotations(pod: dict[str, Any]) -> dict[str, str]:
    meta = pod.get("metadata")
    ann = meta.get("annotations") if isinstance(meta, dict) else None
    return ann if isinstance(ann, dict) else {}


def _skip_reason(pod: dict[str, Any], policy: InjectionPolicy) -> str | None:
    """None to inject, "" to pass silently, else a warning explaining why not."""
    ann = _annotations(pod)
    if AGENT_CONFIG_ANNOTATION not in ann or policy is InjectionPolicy.NEVER:
        return ""
    opt = str(ann.get(INJECT_ANNOTATION, "")).lower()
    if opt == "disabled":
        return ""
    if policy is InjectionPolicy.WHEN_ENABLED and opt != "enabled":
        return ""
    if any(c.get("name") == AGENT_CONTAINER for c in _containers(pod)):
        return ""
    meta = pod.get("metadata")
    owners = meta.get("ownerReferences") if isinstance(meta, dict) else None
    owners = owners if isinstance(owners, list) else []
    controller = next((o for o in owners if isinstance(o, dict) and o.get("controller")), None)
    if controller is None or controller.get("kind") not in INJECTABLE_OWNERS:
        return "not injected: only pods of a Deployment, ReplicaSet or StatefulSet get an agent"
    if not _containers(pod):
        return "not injected: the pod has no containers"
    return None


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod.get("spec")
    containers = spec.get("containers") if isinstance(spec, dict) else None
    return [c for c in containers if isinstance(c, dict)] if isinstance(containers, list) else []


def _warn(response: AdmissionResponse, message: str) -> AdmissionResponse:
    return response.model_copy(update={"warnings": [f"waylay: {message}"]})


def _inject(
    containers: list[dict[str, Any]], config: AgentConfig, image: str, resources: AgentResources
) -> tuple[dict[str, Any] | None, list[str]]:
    """Rename taken-over ports in ``containers`` (in place); return the agent and warnings.

    No agent (None) when no port of the config can be taken over.
    """
    warnings: list[str] = []
    by_name = {c.get("name"): c for c in containers}
    agent_ports: list[dict[str, Any]] = []
    declared: set[str] = set()
    kept: list[TakeoverPort] = []
    for tp in config.ports:
        app = by_name.get(tp.app_container)
        if app is None:
            warnings.append(f"container {tp.app_container!r} not found; port {tp.app_port} skipped")
            continue
        if tp.target_port_name and not _rename_port(app, tp.target_port_name):
            warnings.append(
                f"container {tp.app_container!r} has no port named {tp.target_port_name!r}; skipped"
            )
            continue
        name = agent_port_name(tp)
        if name in declared:
            continue
        declared.add(name)
        kept.append(tp)
        agent_ports.append({"name": name, "containerPort": tp.agent_port, "protocol": tp.protocol})
    if not kept:
        return None, warnings or ["not injected: the agent config names no ports"]
    config = config.model_copy(update={"ports": kept})
    app = by_name.get(kept[0].app_container) or containers[0]
    agent = {
        "name": AGENT_CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "agent"],
        "ports": agent_ports,
        "env": [
            {"name": "WAYLAY_AGENT_CONFIG", "value": config.model_dump_json()},
            _field_env("WAYLAY_POD_IP", "status.podIP"),
            _field_env("WAYLAY_POD_NAME", "metadata.name"),
            _field_env("WAYLAY_NAMESPACE", "metadata.namespace"),
            *_copied_env(app, config.env_prefix),
        ],
        "resources": resources.model_dump(),
        "securityContext": copy.deepcopy(RESTRICTED_SECURITY_CONTEXT),
    }
    env_from = _copied_env_from(app, config.env_prefix)
    if env_from:
        agent["envFrom"] = env_from
    return agent, warnings


def _rename_port(container: dict[str, Any], name: str) -> bool:
    ports = container.get("ports") or []
    taken = {p.get("name") for p in ports if isinstance(p, dict)}
    new = renamed_port_name(name)
    n = 1
    while new in taken:
        suffix = f"-{n}"
        new = renamed_port_name(name)[: _MAX_PORT_NAME - len(suffix)].rstrip("-") + suffix
        n += 1
    for port in ports:
        if isinstance(port, dict) and port.get("name") == name:
            port["name"] = new
            _rewrite_probes(container, name, new)
            return True
    return False


def _rewrite_probes(container: dict[str, Any], old: str, new: str) -> None:
    for key in _PROBES:
        probe = container.get(key)
        if not isinstance(probe, dict):
            continue
        for handler in ("httpGet", "tcpSocket"):
            action = probe.get(handler)
            if isinstance(action, dict) and action.get("port") == old:
                action["port"] = new


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _copied_env(app: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """The app's ``env`` under ``prefix``, with ``$(VAR)`` references following."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for var in app.get("env") or []:
        if not isinstance(var, dict) or not isinstance(var.get("name"), str):
            continue
        item = copy.deepcopy(var)
        item["name"] = prefix + var["name"]
        if isinstance(item.get("value"), str):
            item["value"] = _VAR_REF.sub(lambda m: _ref(m, seen, prefix), item["value"])
        source = item.get("valueFrom")
        if isinstance(source, dict) and isinstance(source.get("resourceFieldRef"), dict):
            source["resourceFieldRef"].setdefault("containerName", app.get("name"))
        seen.add(var["name"])
        out.append(item)
    return out


def _ref(match: re.Match[str], seen: set[str], prefix: str) -> str:
    dollars, name = match.group(1), match.group(2)
    if len(dollars) % 2 == 0 or name not in seen:
        return match.group(0)  # escaped ($$) or not defined earlier: left as written
    return f"{dollars}({prefix}{name})"


def _copied_env_from(app: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for source in app.get("envFrom") or []:
        if isinstance(source, dict):
            item = copy.deepcopy(source)
            item["prefix"] = prefix + str(source.get("prefix") or "")
            out.append(item)
    return out
