"""Every object the server hands out validates against the ``kubernetes`` client's models.

Covers: after the demo-like workload below has been reconciled by the
controllers and run by the kubelet (Deployment -> ReplicaSet -> Pods,
StatefulSet, Service -> Endpoints/EndpointSlices, events, RBAC, webhook
configuration, ingress, lease), every object of every served resource, read
over HTTP, loads into the client's pydantic model for its kind; so do the
list, Scale and Table answers.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from sandbox.resources import RESOURCES
from tests.sandbox.conftest import SandboxHandle
from tests.sandbox.helpers import deployment, raw_request, wait_for

_MODEL_NAMES = {"Event": "CoreV1Event"}


def _model(kind: str) -> Any:
    return getattr(client, _MODEL_NAMES.get(kind, f"V1{kind}"))


def _objects(namespace: str) -> list[tuple[str, dict[str, Any]]]:
    labels = {"app": "db"}
    sts = deployment("db", replicas=1, image="nowhere/db")
    sts["kind"] = "StatefulSet"
    sts["spec"]["serviceName"] = "db"
    return [
        ("/apis/apps/v1/namespaces/{ns}/deployments", deployment("web", replicas=2)),
        ("/apis/apps/v1/namespaces/{ns}/statefulsets", sts),
        (
            "/api/v1/namespaces/{ns}/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
            },
        ),
        (
            "/api/v1/namespaces/{ns}/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "db"},
                "spec": {"clusterIP": "None", "selector": labels, "ports": [{"port": 5432}]},
            },
        ),
        (
            "/api/v1/namespaces/{ns}/secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s"},
                "stringData": {"k": "v"},
            },
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "r"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
            },
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "rb"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
                "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "{ns}"}],
            },
        ),
        (
            "/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses",
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {"name": "ing"},
                "spec": {
                    "rules": [
                        {
                            "host": "web.example",
                            "http": {
                                "paths": [
                                    {
                                        "path": "/",
                                        "pathType": "Prefix",
                                        "backend": {
                                            "service": {"name": "web", "port": {"number": 80}}
                                        },
                                    }
                                ]
                            },
                        }
                    ]
                },
            },
        ),
        (
            "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": "l"},
                "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15},
            },
        ),
    ]


def test_every_object_validates(sandbox: SandboxHandle, namespace: str) -> None:
    import json

    for path, body in _objects(namespace):
        body = json.loads(json.dumps(body).replace("{ns}", namespace))
        status, reply = raw_request(sandbox, "POST", path.format(ns=namespace), body)
        assert status == 201, reply

    def reconciled() -> bool:
        _, pods = raw_request(sandbox, "GET", f"/api/v1/namespaces/{namespace}/pods")
        _, eps = raw_request(sandbox, "GET", f"/api/v1/namespaces/{namespace}/endpoints")
        return len(pods["items"]) >= 3 and bool(eps["items"])

    wait_for(reconciled, what="pods and endpoints")
    checked = 0
    for rt in RESOURCES:
        status, listed = raw_request(sandbox, "GET", f"{rt.url_prefix}/{rt.plural}")
        assert status == 200, listed
        assert listed["kind"] == rt.list_kind and listed["apiVersion"] == rt.api_version
        model = _model(rt.kind)
        list_model = getattr(client, f"{model.__name__}List")
        list_model.from_dict(listed)
        for obj in listed["items"]:
            model.from_dict(obj)
            checked += 1
    assert checked > 20

    status, scale = raw_request(
        sandbox, "GET", f"/apis/apps/v1/namespaces/{namespace}/statefulsets/db/scale"
    )
    assert status == 200
    client.V1Scale.from_dict(scale)
    api = sandbox.api_client()
    table = client.CoreV1Api(api).list_namespaced_pod(
        namespace,
        _headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        _preload_content=False,
    )
    body = json.loads(table.data)
    assert body["kind"] == "Table" and body["rows"]
    assert [c["name"] for c in body["columnDefinitions"]][:3] == ["Name", "Ready", "Status"]
    api.close()
