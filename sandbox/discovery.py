"""Discovery documents: ``/version``, ``/api``, ``/apis``, resource lists and OpenAPI v3.

All built from :mod:`sandbox.resources`. The OpenAPI v3 documents are the
minimum kubectl needs to apply with server-side field validation: one ``patch``
operation per kind, tagged with ``x-kubernetes-group-version-kind`` and taking
a ``fieldValidation`` parameter.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sandbox.errors import ApiError
from sandbox.resources import GROUPS, RESOURCES, SUBRESOURCE_VERBS, ResourceType

__all__ = [
    "KUBE_VERSION",
    "api_group",
    "api_group_list",
    "api_versions",
    "openapi_v3_document",
    "openapi_v3_index",
    "resource_list",
    "version_info",
]

KUBE_VERSION = ("1", "32", "v1.32.0-sandbox")
"""(major, minor, gitVersion) the sandbox reports."""


def version_info() -> dict[str, str]:
    major, minor, git_version = KUBE_VERSION
    return {
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group_doc(group: str) -> dict[str, Any]:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in GROUPS[group]]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def api_group_list() -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_doc(g) for g in GROUPS if g],
    }


def api_group(group: str) -> dict[str, Any]:
    if not group or group not in GROUPS:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(group)}


def _subresource_doc(rt: ResourceType, sub: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": f"{rt.plural}/{sub}",
        "singularName": "",
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(SUBRESOURCE_VERBS[sub]),
    }
    if sub == "scale":
        doc.update(group="autoscaling", version="v1", kind="Scale")
    elif sub == "portforward":
        doc["kind"] = "PodPortForwardOptions"
    return doc


def resource_list(group: str, version: str) -> dict[str, Any]:
    served = [r for r in RESOURCES if r.group == group and r.version == version]
    if not served:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    resources: list[dict[str, Any]] = []
    for rt in served:
        doc: dict[str, Any] = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
            "storageVersionHash": hashlib.sha256(rt.key.encode()).hexdigest()[:12],
        }
        if rt.short_names:
            doc["shortNames"] = list(rt.short_names)
        if rt.categories:
            doc["categories"] = list(rt.categories)
        resources.append(doc)
        resources.extend(_subresource_doc(rt, sub) for sub in rt.subresources)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_v3_document(group: str, version: str) -> dict[str, Any]:
    served = [r for r in RESOURCES if r.group == group and r.version == version]
    if not served:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    paths: dict[str, Any] = {}
    for rt in served:
        scope = "/namespaces/{namespace}" if rt.namespaced else ""
        url = f"/{_gv_path(group, version)}{scope}/{rt.plural}/{{name}}"
        gvk = {"group": group, "version": version, "kind": rt.kind}
        paths[url] = {
            "patch": {
                "operationId": f"patch{rt.kind}",
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [
                    {
                        "name": "fieldValidation",
                        "in": "query",
                        "description": "Ignore, Warn or Strict",
                        "schema": {"type": "string", "uniqueItems": True},
                    },
                    {
                        "name": "fieldManager",
                        "in": "query",
                        "schema": {"type": "string", "uniqueItems": True},
                    },
                    {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "OK"}},
            }
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBE_VERSION[2]},
        "paths": paths,
        "components": {"schemas": {}},
    }


def _hash(group: str, version: str) -> str:
    body = json.dumps(openapi_v3_document(group, version), sort_keys=True).encode()
    return hashlib.sha512(body).hexdigest()[:64].upper()


def openapi_v3_index() -> dict[str, Any]:
    paths = {}
    for group, versions in GROUPS.items():
        for version in versions:
            path = _gv_path(group, version)
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={_hash(group, version)}"}
    return {"paths": paths}
