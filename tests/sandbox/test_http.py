"""The raw HTTP answers of the API server, over real TLS with aiohttp.

Covers: TLS verified against the kubeconfig's CA; 401 without or with a bad
token; 403 ``Status`` for the read-only developer (and what it may do);
400 for malformed JSON; 404 for an unknown resource; 400 for a kind that does
not match the URL; 422 naming the field for an invalid spec; 415 for an
unknown patch type; 405 for PUT on a collection or POST on an object;
``as=Table`` requests answered with a ``meta.k8s.io/v1 Table``, others with a
plain list that has ``kind`` and ``apiVersion``; OpenAPI v3 index and
per-group documents; DELETE with a ``DeleteOptions`` body.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.sandbox.conftest import SandboxHandle
from tests.sandbox.helpers import configmap, deployment


class Http:
    def __init__(self, sandbox: SandboxHandle, session: aiohttp.ClientSession) -> None:
        self.sandbox = sandbox
        self.session = session

    async def request(
        self,
        method: str,
        path: str,
        *,
        user: str | None = "admin",
        body: Any = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        all_headers = {"Content-Type": content_type, **(headers or {})}
        if user:
            all_headers["Authorization"] = f"Bearer {self.sandbox.token(user)}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        async with self.session.request(
            method, self.sandbox.url + path, data=data, headers=all_headers
        ) as reply:
            text = await reply.text()
            try:
                return reply.status, json.loads(text)
            except ValueError:
                return reply.status, text


@pytest.fixture
async def http(sandbox: SandboxHandle) -> AsyncIterator[Http]:
    ctx = ssl.create_default_context(cafile=str(sandbox.kubeconfig.parent / "ca.crt"))
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ctx), timeout=timeout
    ) as session:
        yield Http(sandbox, session)


def _is_status(body: Any, code: int, reason: str) -> None:
    assert isinstance(body, dict), body
    assert body["kind"] == "Status" and body["code"] == code and body["reason"] == reason, body


async def test_authentication(http: Http) -> None:
    status, body = await http.request("GET", "/api/v1/namespaces", user=None)
    assert status == 401
    _is_status(body, 401, "Unauthorized")
    status, _ = await http.request(
        "GET", "/api/v1/namespaces", user=None, headers={"Authorization": "Bearer nope"}
    )
    assert status == 401
    status, _ = await http.request("GET", "/healthz", user=None)
    assert status == 200


async def test_developer_is_read_only(http: Http, namespace: str) -> None:
    status, body = await http.request(
        "GET", f"/api/v1/namespaces/{namespace}/pods", user="developer"
    )
    assert status == 200 and body["kind"] == "PodList"
    status, body = await http.request(
        "POST", f"/api/v1/namespaces/{namespace}/configmaps", user="developer", body=configmap("x")
    )
    assert status == 403
    _is_status(body, 403, "Forbidden")
    assert 'User "developer" cannot create resource "configmaps"' in body["message"]
    status, body = await http.request("DELETE", "/api/v1/namespaces/default", user="developer")
    assert status == 403


async def test_bad_input(http: Http, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}"
    status, body = await http.request("POST", f"{base}/configmaps", raw=b'{"kind": ')
    assert status == 400
    _is_status(body, 400, "BadRequest")

    status, body = await http.request("GET", f"{base}/widgets")
    assert status == 404
    _is_status(body, 404, "NotFound")
    status, _ = await http.request("GET", "/apis/nosuch.example.com/v1/things")
    assert status == 404

    status, body = await http.request("POST", f"{base}/services", body=configmap("wrong"))
    assert status == 400
    _is_status(body, 400, "BadRequest")

    bad = deployment("bad")
    del bad["spec"]["selector"]
    bad["spec"]["template"]["spec"]["containers"][0]["name"] = "Not_Valid"
    status, body = await http.request(
        "POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", body=bad
    )
    assert status == 422
    _is_status(body, 422, "Invalid")
    fields = {c["field"] for c in body["details"]["causes"]}
    assert {"spec.selector", "spec.template.spec.containers[0].name"} <= fields

    status, _ = await http.request("POST", f"{base}/configmaps", body=configmap("p"))
    assert status == 201
    status, body = await http.request("PUT", f"{base}/configmaps", body=configmap("p"))
    assert status == 405
    _is_status(body, 405, "MethodNotAllowed")
    status, _ = await http.request("POST", f"{base}/configmaps/p", body=configmap("p"))
    assert status == 405
    status, body = await http.request(
        "PATCH", f"{base}/configmaps/p", body={"data": {}}, content_type="text/plain"
    )
    assert status == 415


async def test_table_and_plain_lists(http: Http) -> None:
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    status, body = await http.request(
        "GET", "/api/v1/namespaces?limit=500", headers={"Accept": accept}
    )
    assert status == 200
    assert body["kind"] == "Table" and body["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in body["columnDefinitions"]] == ["Name", "Status", "Age"]
    default = next(r for r in body["rows"] if r["cells"][0] == "default")
    assert default["cells"][1] == "Active"
    assert default["object"]["metadata"]["name"] == "default"

    status, body = await http.request("GET", "/api/v1/namespaces?limit=500")
    assert status == 200
    assert body["kind"] == "NamespaceList" and body["apiVersion"] == "v1"
    assert body["metadata"]["resourceVersion"]


async def test_openapi_v3(http: Http) -> None:
    status, index = await http.request("GET", "/openapi/v3")
    assert status == 200
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    status, doc = await http.request("GET", url)
    assert status == 200
    ops = [p["patch"] for p in doc["paths"].values()]
    kinds = {op["x-kubernetes-group-version-kind"]["kind"] for op in ops}
    assert {"Deployment", "ReplicaSet", "StatefulSet"} <= kinds
    assert all(any(p["name"] == "fieldValidation" for p in op["parameters"]) for op in ops)
    status, _ = await http.request("GET", "/openapi/v3/apis/apps/v9")
    assert status == 404


async def test_delete_options_body(http: Http, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    status, made = await http.request("POST", base, body=configmap("d"))
    assert status == 201
    options = {
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "propagationPolicy": "Background",
        "preconditions": {"uid": "not-the-uid"},
    }
    status, body = await http.request("DELETE", f"{base}/d", body=options)
    assert status == 409
    options["preconditions"] = {"uid": made["metadata"]["uid"]}
    status, body = await http.request("DELETE", f"{base}/d", body=options)
    assert status == 200 and body["status"] == "Success"
    assert body["details"]["uid"] == made["metadata"]["uid"]
