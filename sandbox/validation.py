"""Validation: the 422 ``Invalid`` answers of a real API server, naming the field.

Checks names (DNS-1123), the fields each kind cannot do without, and the few
cross-field rules clients trip over (a selector that does not match its
template, duplicate container or port names, port names longer than 15).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sandbox.errors import invalid
from sandbox.resources import ResourceType
from sandbox.selectors import match_label_selector

__all__ = ["validate", "validate_update"]

Obj = dict[str, Any]
Causes = list[tuple[str, str, str]]

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_RBAC_NAME_BAD = re.compile(r"[/%]")

_LABEL_NAMED = {"namespaces", "services"}
"""Resources whose names must be DNS-1123 labels rather than subdomains."""


def _required(causes: Causes, field: str) -> None:
    causes.append((field, "FieldValueRequired", "Required value"))


def _bad(causes: Causes, field: str, value: Any, why: str) -> None:
    causes.append((field, "FieldValueInvalid", f"Invalid value: {value!r}: {why}"))


def dns1123_label(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 label, or None when it is."""
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _LABEL.match(value):
        return (
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
            "or '-', and must start and end with an alphanumeric character"
        )
    return None


def dns1123_subdomain(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 subdomain, or None when it is."""
    if len(value) > 253:
        return "must be no more than 253 characters"
    if not _SUBDOMAIN.match(value):
        return (
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
            "characters, '-' or '.', and must start and end with an alphanumeric character"
        )
    return None


def _port_name(causes: Causes, field: str, name: str) -> None:
    if len(name) > 15:
        _bad(causes, field, name, "must be no more than 15 characters")
    elif not _PORT_NAME.match(name) or "--" in name or not re.search(r"[a-z]", name):
        _bad(causes, field, name, "must be an IANA_SVC_NAME (lowercase letters, digits and '-')")


def _unique_name(
    causes: Causes,
    field: str,
    name: str,
    seen: set[str],
    *,
    check: Callable[[Causes, str, str], None],
) -> None:
    """Check one list item's ``name`` with ``check``; a duplicate of an earlier one is refused."""
    check(causes, field, name)
    if name in seen:
        causes.append((field, "FieldValueDuplicate", f"Duplicate value: {name!r}"))
    seen.add(name)


def _label_name(causes: Causes, field: str, name: str) -> None:
    why = dns1123_label(name)
    if why:
        _bad(causes, field, name, why)


def _port_number(causes: Causes, field: str, value: Any, *, allow_zero: bool = False) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        _required(causes, field) if value is None else _bad(
            causes, field, value, "must be an integer"
        )
    elif not (0 if allow_zero else 1) <= value <= 65535:
        _bad(causes, field, value, "must be between 1 and 65535, inclusive")


def _metadata(rt: ResourceType, obj: Obj, causes: Causes) -> None:
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    if not name:
        _required(causes, "metadata.name")
    elif rt.group == "rbac.authorization.k8s.io":
        if _RBAC_NAME_BAD.search(name) or name in (".", ".."):
            _bad(causes, "metadata.name", name, "may not contain '/' or '%'")
    else:
        why = dns1123_label(name) if rt.plural in _LABEL_NAMED else dns1123_subdomain(name)
        if why:
            _bad(causes, "metadata.name", name, why)
    for key, value in (meta.get("labels") or {}).items():
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            _bad(causes, f"metadata.labels.{key}", value, "a valid label must be 63 characters")
    for field in ("labels", "annotations"):
        for key, value in (meta.get(field) or {}).items():
            if not isinstance(value, str):
                _bad(causes, f"metadata.{field}.{key}", value, "must be a string")


def _containers(causes: Causes, path: str, containers: Any, *, required: bool) -> None:
    if not containers:
        if required:
            _required(causes, path)
        return
    seen: set[str] = set()
    for i, c in enumerate(containers):
        where = f"{path}[{i}]"
        name = c.get("name") or ""
        if not name:
            _required(causes, f"{where}.name")
        else:
            _unique_name(causes, f"{where}.name", name, seen, check=_label_name)
        if not c.get("image"):
            _required(causes, f"{where}.image")
        port_names: set[str] = set()
        for j, port in enumerate(c.get("ports") or []):
            _port_number(causes, f"{where}.ports[{j}].containerPort", port.get("containerPort"))
            pname = port.get("name")
            if pname:
                _unique_name(
                    causes, f"{where}.ports[{j}].name", pname, port_names, check=_port_name
                )
        for j, env in enumerate(c.get("env") or []):
            if not env.get("name"):
                _required(causes, f"{where}.env[{j}].name")


def _pod_spec(causes: Causes, path: str, spec: Any) -> None:
    if not isinstance(spec, dict):
        _required(causes, path)
        return
    _containers(causes, f"{path}.containers", spec.get("containers"), required=True)
    _containers(causes, f"{path}.initContainers", spec.get("initContainers"), required=False)
    policy = spec.get("restartPolicy")
    if policy not in (None, "Always", "OnFailure", "Never"):
        causes.append(
            (
                f"{path}.restartPolicy",
                "FieldValueNotSupported",
                f'Unsupported value: "{policy}": supported values: "Always", "OnFailure", "Never"',
            )
        )


def _pod(obj: Obj, causes: Causes) -> None:
    _pod_spec(causes, "spec", obj.get("spec"))


def _workload(obj: Obj, causes: Causes) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        _required(causes, "spec")
        return
    selector = spec.get("selector")
    template = spec.get("template")
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        _required(causes, "spec.selector")
    if not isinstance(template, dict):
        _required(causes, "spec.template")
        return
    labels = (template.get("metadata") or {}).get("labels") or {}
    if selector and not match_label_selector(selector, labels):
        _bad(
            causes,
            "spec.template.metadata.labels",
            labels,
            "`selector` does not match template `labels`",
        )
    _pod_spec(causes, "spec.template.spec", template.get("spec"))
    replicas = spec.get("replicas")
    if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
        _bad(causes, "spec.replicas", replicas, "must be greater than or equal to 0")


def _service(obj: Obj, causes: Causes) -> None:
    spec = obj.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    if kind not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        causes.append(
            (
                "spec.type",
                "FieldValueNotSupported",
                f'Unsupported value: "{kind}": supported values: "ClusterIP", '
                '"ExternalName", "LoadBalancer", "NodePort"',
            )
        )
    ports = spec.get("ports") or []
    if not ports and kind != "ExternalName" and spec.get("clusterIP") != "None":
        _required(causes, "spec.ports")
    names: set[str] = set()
    for i, port in enumerate(ports):
        _port_number(causes, f"spec.ports[{i}].port", port.get("port"))
        name = port.get("name")
        if len(ports) > 1 and not name:
            _required(causes, f"spec.ports[{i}].name")
        if name:
            _unique_name(causes, f"spec.ports[{i}].name", name, names, check=_label_name)
        target = port.get("targetPort")
        if isinstance(target, str):
            _port_name(causes, f"spec.ports[{i}].targetPort", target)
        elif target is not None:
            _port_number(causes, f"spec.ports[{i}].targetPort", target)


def _config_data(obj: Obj, causes: Causes) -> None:
    for field in ("data", "binaryData"):
        for key in obj.get(field) or {}:
            if not _CONFIG_KEY.match(key):
                _bad(
                    causes,
                    f"{field}[{key}]",
                    key,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                )


def _rules(obj: Obj, causes: Causes) -> None:
    for i, rule in enumerate(obj.get("rules") or []):
        if not rule.get("verbs"):
            _required(causes, f"rules[{i}].verbs")
        if not rule.get("nonResourceURLs") and rule.get("apiGroups") is None:
            _required(causes, f"rules[{i}].apiGroups")


def _binding(obj: Obj, causes: Causes) -> None:
    ref = obj.get("roleRef") or {}
    if not ref:
        _required(causes, "roleRef")
        return
    for field in ("kind", "name"):
        if not ref.get(field):
            _required(causes, f"roleRef.{field}")
    for i, subject in enumerate(obj.get("subjects") or []):
        for field in ("kind", "name"):
            if not subject.get(field):
                _required(causes, f"subjects[{i}].{field}")


def _webhooks(obj: Obj, causes: Causes) -> None:
    for i, hook in enumerate(obj.get("webhooks") or []):
        where = f"webhooks[{i}]"
        if not hook.get("name"):
            _required(causes, f"{where}.name")
        config = hook.get("clientConfig") or {}
        if not (config.get("url") or config.get("service")):
            _required(causes, f"{where}.clientConfig")
        if not hook.get("sideEffects"):
            _required(causes, f"{where}.sideEffects")
        if not hook.get("admissionReviewVersions"):
            _required(causes, f"{where}.admissionReviewVersions")


def _endpointslice(obj: Obj, causes: Causes) -> None:
    if not obj.get("addressType"):
        _required(causes, "addressType")
    for i, endpoint in enumerate(obj.get("endpoints") or []):
        if not endpoint.get("addresses"):
            _required(causes, f"endpoints[{i}].addresses")


_BY_RESOURCE: dict[str, Callable[[Obj, Causes], None]] = {
    "pods": _pod,
    "services": _service,
    "configmaps": _config_data,
    "secrets": _config_data,
    "deployments.apps": _workload,
    "replicasets.apps": _workload,
    "statefulsets.apps": _workload,
    "roles.rbac.authorization.k8s.io": _rules,
    "clusterroles.rbac.authorization.k8s.io": _rules,
    "rolebindings.rbac.authorization.k8s.io": _binding,
    "clusterrolebindings.rbac.authorization.k8s.io": _binding,
    "mutatingwebhookconfigurations.admissionregistration.k8s.io": _webhooks,
    "endpointslices.discovery.k8s.io": _endpointslice,
}


def validate(rt: ResourceType, obj: Obj) -> None:
    """Raise 422 ``Invalid`` (every problem, each naming its field) unless ``obj`` is valid."""
    causes: Causes = []
    _metadata(rt, obj, causes)
    check = _BY_RESOURCE.get(rt.key)
    if check is not None:
        check(obj, causes)
    if causes:
        name = (obj.get("metadata") or {}).get("name") or ""
        raise invalid(rt.kind, rt.group, name, causes)


_IMMUTABLE: dict[str, tuple[tuple[str, ...], ...]] = {
    "deployments.apps": (("spec", "selector"),),
    "replicasets.apps": (("spec", "selector"),),
    "statefulsets.apps": (("spec", "selector"), ("spec", "serviceName")),
    "services": (("spec", "clusterIP"),),
    "secrets": (("type",),),
}


def _at(obj: Obj, path: tuple[str, ...]) -> Any:
    cur: Any = obj
    for part in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def validate_update(rt: ResourceType, old: Obj, new: Obj) -> None:
    """422 when an update changes a field that is immutable once set."""
    causes: Causes = []
    for path in _IMMUTABLE.get(rt.key, ()):
        before, after = _at(old, path), _at(new, path)
        if before not in (None, "") and before != after:
            causes.append(
                (
                    ".".join(path),
                    "FieldValueInvalid",
                    f"Invalid value: {after!r}: field is immutable",
                )
            )
    if causes:
        name = (new.get("metadata") or {}).get("name") or ""
        raise invalid(rt.kind, rt.group, name, causes)
