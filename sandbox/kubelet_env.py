"""A container's environment, resolved as the kubelet does.

Order (later wins): the sandbox's own variables, Service links of the pod's
namespace (``{NAME}_SERVICE_HOST``/``_PORT``, when ``enableServiceLinks`` is not
false), ``envFrom``, then ``env``; ``$(VAR)`` references in ``env`` values,
``command`` and ``args`` expand against what is defined so far (``$$`` escapes).

A missing ConfigMap, Secret or key that is not ``optional`` is a
``CreateContainerConfigError``, with the real kubelet's wording.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["EnvError", "Lookup", "container_env", "expand", "service_links"]

Lookup = Callable[[str, str, str], dict[str, Any] | None]
"""``lookup(resource, namespace, name)``: an object from the store, or ``None``."""

_FIELD = re.compile(r"^metadata\.(labels|annotations)\[['\"](.+)['\"]\]$")
_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class EnvError(Exception):
    """The container cannot be configured: reason ``CreateContainerConfigError``."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Expand ``$(VAR)`` from ``env``; unknown references stay as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REF.sub(replace, text)


def _field_ref(pod: dict[str, Any], path: str, pod_ip: str) -> str:
    metadata = pod.get("metadata", {})
    spec = pod.get("spec", {})
    simple = {
        "metadata.name": metadata.get("name", ""),
        "metadata.namespace": metadata.get("namespace", ""),
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path])
    match = _FIELD.match(path)
    if match:
        return str((metadata.get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted((metadata.get(path.split(".")[1]) or {}).items())
        return "\n".join(f'{key}="{value}"' for key, value in items)
    raise EnvError(f'unsupported fieldRef fieldPath "{path}"')


def _resource_ref(container: dict[str, Any], ref: dict[str, Any]) -> str:
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(name)
    if value is not None:
        return str(value)
    if name == "cpu":  # unset limit: the node's allocatable, as on a real node
        return str(os.cpu_count() or 1)
    if name == "memory":
        return str(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return "0"


def _data(obj: dict[str, Any], *, secret: bool) -> dict[str, str]:
    values: dict[str, str] = {}
    if secret:
        for key, value in (obj.get("data") or {}).items():
            values[key] = base64.b64decode(value).decode("utf-8", "replace")
        values.update(obj.get("stringData") or {})
    else:
        values.update(obj.get("data") or {})
    return values


def _key_ref(lookup: Lookup, namespace: str, ref: dict[str, Any], *, secret: bool) -> str | None:
    kind, resource = ("secret", "secrets") if secret else ("configmap", "configmaps")
    name, key = str(ref.get("name", "")), str(ref.get("key", ""))
    obj = lookup(resource, namespace, name)
    if obj is None:
        if ref.get("optional"):
            return None
        raise EnvError(f'{kind} "{name}" not found')
    values = _data(obj, secret=secret)
    if key not in values:
        if ref.get("optional"):
            return None
        title = "Secret" if secret else "ConfigMap"
        raise EnvError(f"couldn't find key {key} in {title} {namespace}/{name}")
    return values[key]


def service_links(services: list[dict[str, Any]]) -> dict[str, str]:
    """``{NAME}_SERVICE_HOST`` / ``_SERVICE_PORT[_PORTNAME]`` for each Service with a ClusterIP."""
    env: dict[str, str] = {}
    for service in services:
        spec = service.get("spec") or {}
        ip = spec.get("clusterIP")
        ports = spec.get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        prefix = service["metadata"]["name"].upper().replace("-", "_")
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            if port.get("name"):
                suffix = str(port["name"]).upper().replace("-", "_")
                env[f"{prefix}_SERVICE_PORT_{suffix}"] = str(port["port"])
    return env


def container_env(
    pod: dict[str, Any],
    container: dict[str, Any],
    *,
    lookup: Lookup,
    pod_ip: str,
    base: Mapping[str, str],
    services: list[dict[str, Any]] | None = None,
) -> dict[str, str]:
    """The full environment of ``container``; raises ``EnvError``."""
    namespace = pod["metadata"].get("namespace", "default")
    env: dict[str, str] = dict(base)
    if (pod.get("spec") or {}).get("enableServiceLinks", True) is not False:
        env.update(service_links(services or []))
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix", ""))
        for secret, key in ((False, "configMapRef"), (True, "secretRef")):
            ref = source.get(key)
            if not ref:
                continue
            kind, resource = ("secret", "secrets") if secret else ("configmap", "configmaps")
            obj = lookup(resource, namespace, str(ref.get("name", "")))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f'{kind} "{ref.get("name", "")}" not found')
            for data_key, data_value in _data(obj, secret=secret).items():
                env[prefix + data_key] = data_value
    for item in container.get("env") or []:
        name = str(item["name"])
        source = item.get("valueFrom")
        if source is None:
            env[name] = expand(str(item.get("value", "")), env)
            continue
        value: str | None
        if "fieldRef" in source:
            value = _field_ref(pod, str(source["fieldRef"].get("fieldPath", "")), pod_ip)
        elif "resourceFieldRef" in source:
            value = _resource_ref(container, source["resourceFieldRef"])
        elif "configMapKeyRef" in source:
            value = _key_ref(lookup, namespace, source["configMapKeyRef"], secret=False)
        elif "secretKeyRef" in source:
            value = _key_ref(lookup, namespace, source["secretKeyRef"], secret=True)
        else:
            raise EnvError(f"env {name}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[name] = value
    return env
