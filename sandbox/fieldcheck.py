"""Server-side field validation (``?fieldValidation=Strict|Warn``): unknown fields.

kubectl sends ``fieldValidation=Strict`` with every create, replace and apply;
the real server then refuses a manifest with a field its schema does not know
(a typo such as ``spec.replica``) with 400 ``strict decoding error: unknown
field "spec.replica"``. ``Warn`` accepts the object and returns the same text
as a ``Warning`` header. The schema is the ``kubernetes`` client's models
(``openapi_types``/``attribute_map``), loaded on first use.
"""

from __future__ import annotations

import functools
from typing import Any

from sandbox.errors import bad_request
from sandbox.resources import ResourceType

__all__ = ["check_fields", "unknown_fields"]

_TOP_MODELS = {"Event": "CoreV1Event"}


@functools.cache
def _models() -> Any:
    from kubernetes import client  # heavy; only when a client asks for validation

    return client


def _walk(type_name: str, value: Any, path: str, out: list[str]) -> None:
    if type_name.startswith("list[") and isinstance(value, list):
        inner = type_name[len("list[") : -1]
        for i, item in enumerate(value):
            _walk(inner, item, f"{path}[{i}]", out)
    elif type_name.startswith("dict(") and isinstance(value, dict):
        inner = type_name[type_name.index(",") + 1 : -1].strip()
        for key, item in value.items():
            _walk(inner, item, f"{path}[{key}]", out)
    elif isinstance(value, dict):
        _object(type_name, value, path, out)


def _object(model_name: str, data: dict[str, Any], path: str, out: list[str]) -> None:
    model = getattr(_models(), model_name, None)
    types = getattr(model, "openapi_types", None)
    names = getattr(model, "attribute_map", None)
    if not isinstance(types, dict) or not isinstance(names, dict):
        return  # not a model (``object``, quantities, int-or-string): anything goes
    by_json = {json_name: attr for attr, json_name in names.items()}
    for key, value in data.items():
        if key.startswith("$"):
            continue  # strategic-merge directives
        where = f"{path}.{key}" if path else key
        attr = by_json.get(key)
        if attr is None:
            out.append(where)
        elif value is not None:
            _walk(str(types[attr]), value, where, out)


def unknown_fields(rt: ResourceType, obj: dict[str, Any]) -> list[str]:
    """Dotted paths of the fields in ``obj`` that the kind's schema does not declare."""
    found: list[str] = []
    _object(_TOP_MODELS.get(rt.kind, f"V1{rt.kind}"), obj, "", found)
    return found


def check_fields(rt: ResourceType, obj: Any, mode: str) -> list[str]:
    """Apply ``fieldValidation``: raise 400 for Strict, return warnings for Warn."""
    if mode not in ("Strict", "Warn") or not isinstance(obj, dict):
        return []
    problems = [f'unknown field "{path}"' for path in unknown_fields(rt, obj)]
    if problems and mode == "Strict":
        raise bad_request(
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
            f"strict decoding error: {', '.join(problems)}"
        )
    return problems
