"""The four PATCH flavours: JSON patch, merge patch, strategic merge patch, apply.

- ``json``: RFC 6902, by :mod:`jsonpatch`.
- ``merge``: RFC 7386: objects merge, ``null`` deletes, everything else replaces.
- ``strategic``: like merge, except lists with a merge key (containers by
  ``name``, container ports by ``containerPort``, service ports by ``port``, ...)
  merge item by item, and the directives ``$patch`` (``delete``/``replace``/
  ``merge``), ``$setElementOrder/<list>``, ``$deleteFromPrimitiveList/<list>``
  and ``$retainKeys`` are honoured. Merge keys follow the Kubernetes OpenAPI
  definitions (``x-kubernetes-patch-merge-key``) of the kinds the sandbox serves.
- ``apply`` (server-side apply): the applied configuration is merged into the
  live object with the strategic rules; fields it omits are kept.
"""

from __future__ import annotations

from typing import Any

import jsonpatch

from sandbox.errors import ApiError, bad_request
from sandbox.store import copy_json

__all__ = ["PATCH_TYPES", "apply_patch", "merge_patch", "strategic_merge"]

PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+json": "apply",
}
"""PATCH Content-Type -> patch type."""

_PRIMITIVE_MERGE = "<primitive>"

_CONTAINER_LISTS = {"containers", "initContainers", "ephemeralContainers"}
_BY_NAME = _CONTAINER_LISTS | {
    "env",
    "volumes",
    "imagePullSecrets",
    "webhooks",
    "resourceClaims",
    "schedulingGates",
}


def _merge_key(path: tuple[str, ...]) -> str | None:
    """The merge key of the list at ``path`` (field names only), or None to replace it."""
    if not path:
        return None
    last = path[-1]
    parent = path[-2] if len(path) > 1 else ""
    if last == "ports":
        if parent in _CONTAINER_LISTS:
            return "containerPort"
        if path == ("spec", "ports"):
            return "port"
        return None
    if last in _BY_NAME:
        return "name"
    if last == "volumeMounts":
        return "mountPath"
    if last == "volumeDevices":
        return "devicePath"
    if last == "conditions":
        return "type"
    if last == "ownerReferences":
        return "uid"
    if last == "hostAliases":
        return "ip"
    if last == "topologySpreadConstraints":
        return "topologyKey"
    if path == ("metadata", "finalizers"):
        return _PRIMITIVE_MERGE
    return None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy_json(patch)
    result = copy_json(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _merge_list(
    original: list[Any], patch: list[Any], path: tuple[str, ...], order: list[Any] | None
) -> list[Any]:
    key = _merge_key(path)
    if key is None:
        return [
            strategic_merge(None, item, path) for item in patch if item != {"$patch": "replace"}
        ]
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [
            strategic_merge(None, item, path)
            for item in patch
            if not (isinstance(item, dict) and item.get("$patch") == "replace")
        ]
    if key == _PRIMITIVE_MERGE:
        merged = list(original)
        merged.extend(item for item in patch if item not in merged)
        return _reorder(merged, order, None)
    result = [copy_json(item) for item in original]
    for item in patch:
        if not isinstance(item, dict):
            raise bad_request(f"{'.'.join(path)}: expected objects with merge key {key!r}")
        directive = item.get("$patch")
        ident = item.get(key)
        index = next(
            (i for i, cur in enumerate(result) if isinstance(cur, dict) and cur.get(key) == ident),
            None,
        )
        if directive == "delete":
            result = [
                cur for cur in result if not (isinstance(cur, dict) and cur.get(key) == ident)
            ]
        elif index is None:
            result.append(strategic_merge(None, item, path))
        else:
            result[index] = strategic_merge(result[index], item, path)
    return _reorder(result, order, key)


def _reorder(items: list[Any], order: list[Any] | None, key: str | None) -> list[Any]:
    """Apply ``$setElementOrder``: listed items first in that order, the rest after."""
    if not order:
        return items

    def ident(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, dict) else item

    wanted = [ident(o) for o in order]
    rank = {repr(w): i for i, w in enumerate(wanted)}
    return sorted(items, key=lambda item: rank.get(repr(ident(item)), len(rank)))


def strategic_merge(original: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    """Strategic merge patch of ``patch`` into ``original`` (neither is changed)."""
    if not isinstance(patch, dict):
        return copy_json(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace" or not isinstance(original, dict):
        return {
            k: strategic_merge(None, v, (*path, k))
            for k, v in patch.items()
            if not k.startswith("$") and v is not None
        }
    result = copy_json(original)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in (value or [])]
            continue
        if value is None:
            result.pop(key, None)
            continue
        sub = (*path, key)
        current = result.get(key)
        if isinstance(value, list):
            order = patch.get(f"$setElementOrder/{key}")
            result[key] = _merge_list(
                current if isinstance(current, list) else [], value, sub, order
            )
        elif isinstance(value, dict):
            merged = strategic_merge(current, value, sub)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = value
    for key, order in patch.items():
        if key.startswith("$setElementOrder/"):
            field = key.split("/", 1)[1]
            if field not in patch and isinstance(result.get(field), list):
                result[field] = _reorder(result[field], order, _merge_key((*path, field)))
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _json_patch(obj: dict[str, Any], patch: Any) -> Any:
    if not isinstance(patch, list):
        raise bad_request("a JSON patch must be a list of operations")
    try:
        return jsonpatch.JsonPatch(patch).apply(obj)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise ApiError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
        )
    except (
        jsonpatch.JsonPatchException,
        jsonpatch.JsonPointerException,
        TypeError,
        KeyError,
    ) as exc:
        raise ApiError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
        )


def apply_patch(obj: dict[str, Any], patch: Any, patch_type: str) -> dict[str, Any]:
    """``obj`` with ``patch`` applied (``obj`` itself is not changed)."""
    if patch_type == "json":
        result = _json_patch(copy_json(obj), patch)
    elif not isinstance(patch, dict):
        raise bad_request(f"a {patch_type} patch must be a JSON object")
    elif patch_type == "merge":
        result = merge_patch(obj, patch)
    elif patch_type in ("strategic", "apply"):
        result = strategic_merge(obj, patch)
    else:
        raise ApiError(415, "UnsupportedMediaType", f"unknown patch type {patch_type!r}")
    if not isinstance(result, dict):
        raise bad_request("the patch did not produce an object")
    return result
