"""Reading an API request: which resource a URL names, the verb, and the query options.

``/api/v1/namespaces/NS/pods/NAME/status`` becomes
``ResourceRequest(resource=pods, namespace=NS, name=NAME, subresource="status",
verb="update")``, the same attributes RBAC and admission see.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sandbox.errors import ApiError, bad_request
from sandbox.resources import ResourceType, lookup

__all__ = [
    "ListOptions",
    "ResourceRequest",
    "decode_continue",
    "dry_run",
    "encode_continue",
    "parse_path",
    "read_json",
]

_NOT_FOUND = "the server could not find the requested resource"


@dataclass(frozen=True)
class ResourceRequest:
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str
    verb: str
    watch: bool = False


_STREAMING = ("portforward", "exec", "attach")
"""Subresources whose WebSocket GET is authorized as ``create`` (Kubernetes >= 1.30,
``AuthorizePodWebsocketUpgradeCreatePermission``)."""


def _verb(method: str, name: str | None, subresource: str, watch: bool) -> str:
    if subresource in _STREAMING and method in ("GET", "POST"):
        return "create"
    if method in ("GET", "HEAD"):
        if name is None:
            return "watch" if watch else "list"
        return "get"
    if method == "POST":
        if name is not None and subresource not in _STREAMING:
            raise ApiError(405, "MethodNotAllowed", "POST is only allowed on a collection")
        return "create"
    if method in ("PUT", "PATCH") and name is None:
        raise ApiError(405, "MethodNotAllowed", f"{method} needs an object name in the URL")
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if name is not None else "deletecollection"
    raise ApiError(405, "MethodNotAllowed", f"method {method} is not supported")


def parse_path(method: str, path: str, query: dict[str, str]) -> ResourceRequest:
    """The resource request a ``/api/...`` or ``/apis/...`` URL names; 404 if none."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise ApiError(404, "NotFound", _NOT_FOUND)
    watch = query.get("watch", "") in ("true", "1")
    if rest[:1] == ["watch"]:
        watch, rest = True, rest[1:]
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        try:
            candidate = lookup(group, version, rest[2])
        except ApiError:
            candidate = None
        if candidate is not None and candidate.namespaced:
            namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise ApiError(404, "NotFound", _NOT_FOUND)
    rt = lookup(group, version, rest[0])
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else ""
    if rt.namespaced and name is not None and namespace is None:
        raise ApiError(404, "NotFound", _NOT_FOUND)
    if subresource and subresource not in rt.subresources:
        raise ApiError(404, "NotFound", _NOT_FOUND)
    return ResourceRequest(
        rt=rt,
        namespace=namespace,
        name=name,
        subresource=subresource,
        verb=_verb(method, name, subresource, watch),
        watch=watch and name is None,
    )


@dataclass(frozen=True)
class ListOptions:
    label_selector: str
    field_selector: str
    limit: int
    continue_token: str
    resource_version: str
    timeout_seconds: float | None
    allow_bookmarks: bool

    @classmethod
    def from_query(cls, query: Any) -> ListOptions:
        def number(key: str) -> int | None:
            raw = query.get(key)
            if raw in (None, ""):
                return None
            try:
                return int(raw)
            except ValueError:
                raise bad_request(f"{key}: invalid value {raw!r}: must be an integer")

        timeout = number("timeoutSeconds")
        return cls(
            label_selector=query.get("labelSelector", ""),
            field_selector=query.get("fieldSelector", ""),
            limit=max(number("limit") or 0, 0),
            continue_token=query.get("continue", ""),
            resource_version=query.get("resourceVersion", ""),
            timeout_seconds=float(timeout) if timeout is not None else None,
            allow_bookmarks=query.get("allowWatchBookmarks", "") in ("true", "1"),
        )


def encode_continue(namespace: str, name: str) -> str:
    raw = json.dumps({"ns": namespace, "name": name}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_continue(token: str) -> tuple[str, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(data["ns"]), str(data["name"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise bad_request("continue key is not valid: list again without a continue token")


async def read_json(request: web.Request) -> Any:
    """The request body as JSON (YAML for apply patches); 400 when malformed."""
    if request.content_type.startswith("application/vnd.kubernetes.protobuf"):
        raise ApiError(
            415,
            "UnsupportedMediaType",
            "the sandbox speaks JSON only, not protobuf: send application/json "
            "(kubectl: use `kubectl apply -f` instead of a typed `kubectl create` generator)",
        )
    raw = await request.read()
    if not raw.strip():
        raise bad_request("the request body is empty: send a JSON object")
    try:
        return json.loads(raw)
    except ValueError as exc:
        if request.content_type == "application/apply-patch+yaml":
            import yaml

            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError:
                pass
        raise bad_request(f"the request body is not valid JSON: {exc}")


def dry_run(query: Any, body: dict[str, Any] | None = None) -> bool:
    values = list(query.getall("dryRun", [])) if hasattr(query, "getall") else []
    if body:
        values.extend(body.get("dryRun") or [])
    for value in values:
        if value != "All":
            raise bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
    return bool(values)
