"""Patches: the pure functions of ``sandbox.patch`` and the three types plus apply over HTTP.

Covers: RFC 7386 merge patch (null deletes, lists replace); strategic merge
by merge key (containers and env by name, container ports by containerPort,
service ports by port, volumeMounts by mountPath), ``$patch: delete`` on a
list item, ``$patch: replace`` on a map and on a list, ``$setElementOrder``,
``$deleteFromPrimitiveList``, ``$retainKeys``, finalizers merged as a set,
lists without a merge key replaced; the client's dict body (strategic) and
list body (JSON patch), merge patch, a failing JSON-patch ``test`` (422),
server-side apply creating and then updating an object.
"""

from __future__ import annotations

import pytest
from kubernetes import client

from sandbox.patch import apply_patch, merge_patch, strategic_merge
from tests.sandbox.conftest import SandboxHandle
from tests.sandbox.helpers import deployment, raw_request

POD_SPEC = {
    "containers": [
        {
            "name": "app",
            "image": "a:1",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "ports": [{"containerPort": 8080, "name": "http"}],
            "volumeMounts": [{"name": "v", "mountPath": "/data"}],
        },
        {"name": "side", "image": "s:1"},
    ],
    "tolerations": [{"key": "x"}],
}


def test_merge_patch() -> None:
    target = {"a": {"b": 1, "c": 2}, "l": [1, 2]}
    assert merge_patch(target, {"a": {"b": None, "d": 3}, "l": [3]}) == {
        "a": {"c": 2, "d": 3},
        "l": [3],
    }
    assert target == {"a": {"b": 1, "c": 2}, "l": [1, 2]}  # unchanged


def test_strategic_merge_by_keys() -> None:
    patch = {
        "containers": [
            {
                "name": "app",
                "image": "a:2",
                "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}],
                "ports": [{"containerPort": 9090, "name": "admin"}],
                "volumeMounts": [{"mountPath": "/data", "readOnly": True}],
            },
            {"name": "side", "$patch": "delete"},
        ],
        "tolerations": [{"key": "y"}],
    }
    out = strategic_merge(POD_SPEC, patch, ("spec", "template", "spec"))
    app = out["containers"][0]
    assert [c["name"] for c in out["containers"]] == ["app"]
    assert app["image"] == "a:2"
    assert app["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "two"},
        {"name": "C", "value": "3"},
    ]
    assert [p["containerPort"] for p in app["ports"]] == [8080, 9090]
    assert app["volumeMounts"] == [{"name": "v", "mountPath": "/data", "readOnly": True}]
    assert out["tolerations"] == [{"key": "y"}]  # no merge key: replaced


def test_strategic_directives() -> None:
    spec = {"ports": [{"port": 80, "name": "a"}, {"port": 81, "name": "b"}], "x": {"k": 1}}
    reordered = strategic_merge(
        {"spec": spec},
        {"spec": {"$setElementOrder/ports": [{"port": 81}, {"port": 80}]}},
    )
    assert [p["port"] for p in reordered["spec"]["ports"]] == [81, 80]
    replaced = strategic_merge({"spec": spec}, {"spec": {"x": {"$patch": "replace", "j": 2}}})
    assert replaced["spec"]["x"] == {"j": 2}
    list_replaced = strategic_merge(
        {"spec": spec}, {"spec": {"ports": [{"$patch": "replace"}, {"port": 90}]}}
    )
    assert list_replaced["spec"]["ports"] == [{"port": 90}]
    meta = {"metadata": {"finalizers": ["a", "b"]}}
    assert strategic_merge(meta, {"metadata": {"finalizers": ["c", "a"]}})["metadata"][
        "finalizers"
    ] == ["a", "b", "c"]
    assert strategic_merge(meta, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})[
        "metadata"
    ]["finalizers"] == ["b"]
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}
    assert strategic_merge(
        {"strategy": strategy}, {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}
    ) == {"strategy": {"type": "Recreate"}}


def test_json_patch_failures() -> None:
    from sandbox.errors import ApiError

    with pytest.raises(ApiError) as failed:
        apply_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 2}], "json")
    assert failed.value.code == 422
    with pytest.raises(ApiError) as not_list:
        apply_patch({"a": 1}, {"op": "add"}, "json")
    assert not_list.value.code == 400


def test_patch_types_over_http(apps: client.AppsV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, deployment("p", image="nowhere/none"))
    # dict body -> strategic merge: the env list merges into the named container
    apps.patch_namespaced_deployment(
        "p",
        namespace,
        {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "app", "env": [{"name": "X", "value": "1"}]}]}
                }
            }
        },
    )
    # list body -> JSON patch
    apps.patch_namespaced_deployment(
        "p", namespace, [{"op": "add", "path": "/metadata/labels/patched", "value": "json"}]
    )
    dep = apps.read_namespaced_deployment("p", namespace)
    container = dep.spec.template.spec.containers[0]
    assert container.image == "nowhere/none" and container.env[0].name == "X"
    assert dep.metadata.labels["patched"] == "json"
    assert dep.metadata.generation == 2  # the label did not bump it; the template did


def test_merge_patch_and_server_side_apply(sandbox: SandboxHandle, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps/applied?fieldManager=test"
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "applied"},
        "data": {"a": "1"},
    }
    apply = "application/apply-patch+yaml"
    status, created = raw_request(sandbox, "PATCH", path, body, content_type=apply)
    assert status == 201 and created["data"] == {"a": "1"} and created["metadata"]["uid"]
    body["data"] = {"a": "1", "b": "2"}
    status, updated = raw_request(sandbox, "PATCH", path, body, content_type=apply)
    assert status == 200 and updated["data"] == {"a": "1", "b": "2"}
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    merge = "application/merge-patch+json"
    status, merged = raw_request(sandbox, "PATCH", path, {"data": {"a": None}}, content_type=merge)
    assert status == 200 and merged["data"] == {"b": "2"}
    status, missing = raw_request(
        sandbox, "PATCH", path.replace("applied", "absent"), {"data": {}}, content_type=merge
    )
    assert status == 404 and missing["reason"] == "NotFound"
