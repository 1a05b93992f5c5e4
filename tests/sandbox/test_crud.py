"""CRUD through the real ``kubernetes`` client (sync), against the HTTPS sandbox.

Covers: discovery (/version, /api, /apis, resource lists); create/get/list/
update/delete of namespaced and cluster-scoped objects; every returned object
deserializes into the client's pydantic models; uid, resourceVersion,
generation, creationTimestamp; generateName; list across all namespaces;
label selectors (=, !=, in, notin, exists, !exists) and field selectors;
limit/continue; 409 on a stale resourceVersion and on a duplicate name;
dryRun=All; status and scale subresources (autoscaling/v1 Scale); Service
ClusterIP allocation; DELETE answers (object for services, Status for configmaps);
an immutable selector (422).
"""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.sandbox.conftest import SandboxHandle
from tests.sandbox.helpers import configmap, deployment


def test_discovery(sandbox: SandboxHandle) -> None:
    api = sandbox.api_client()
    version = client.VersionApi(api).get_code()
    assert version.major == "1" and version.git_version.startswith("v1.")
    core_versions = client.CoreApi(api).get_api_versions()
    assert core_versions.versions == ["v1"]
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {"apps", "rbac.authorization.k8s.io", "discovery.k8s.io"} <= groups
    resources = client.CoreV1Api(api).get_api_resources()
    assert resources.group_version == "v1"
    names = {r.name for r in resources.resources}
    assert {"pods", "pods/status", "pods/log", "pods/portforward", "namespaces"} <= names
    apps = client.AppsV1Api(api).get_api_resources()
    scale = next(r for r in apps.resources if r.name == "deployments/scale")
    assert (scale.group, scale.version, scale.kind) == ("autoscaling", "v1", "Scale")
    assert not scale.short_names  # subresources never repeat the parent's short names
    api.close()


def test_configmap_lifecycle(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, configmap("one", a="1"))
    assert isinstance(created, client.V1ConfigMap)
    meta = created.metadata
    assert meta.uid and meta.resource_version and meta.creation_timestamp
    assert meta.namespace == namespace

    got = core.read_namespaced_config_map("one", namespace)
    assert got.data == {"a": "1"} and got.metadata.uid == meta.uid

    got.data["b"] = "2"
    updated = core.replace_namespaced_config_map("one", namespace, got)
    assert int(updated.metadata.resource_version) > int(meta.resource_version)

    stale = got  # still carries the old resourceVersion
    stale.data["c"] = "3"
    with pytest.raises(client.ApiException) as conflict:
        core.replace_namespaced_config_map("one", namespace, stale)
    assert conflict.value.status == 409

    with pytest.raises(client.ApiException) as exists:
        core.create_namespaced_config_map(namespace, configmap("one"))
    assert exists.value.status == 409 and "AlreadyExists" in exists.value.body

    status = core.delete_namespaced_config_map("one", namespace)
    assert status["status"] == "Success"
    with pytest.raises(client.ApiException) as gone:
        core.read_namespaced_config_map("one", namespace)
    assert gone.value.status == 404


def test_generate_name_and_dry_run(core: client.CoreV1Api, namespace: str) -> None:
    body = configmap("")
    body["metadata"] = {"generateName": "gen-"}
    made = core.create_namespaced_config_map(namespace, body)
    assert made.metadata.name.startswith("gen-") and len(made.metadata.name) == len("gen-") + 5

    dry = core.create_namespaced_config_map(namespace, configmap("dry"), dry_run="All")
    assert dry.metadata.name == "dry"
    with pytest.raises(client.ApiException) as missing:
        core.read_namespaced_config_map("dry", namespace)
    assert missing.value.status == 404

    core.delete_namespaced_config_map(made.metadata.name, namespace, dry_run="All")
    assert core.read_namespaced_config_map(made.metadata.name, namespace)


def test_selectors_and_pagination(core: client.CoreV1Api, namespace: str) -> None:
    for i, (tier, extra) in enumerate(
        [("web", True), ("web", False), ("db", True), ("cache", False), ("db", False)]
    ):
        labels = {"tier": tier, **({"extra": "yes"} if extra else {})}
        core.create_namespaced_config_map(namespace, configmap(f"cm-{i}", labels))

    def names(**kw: str) -> list[str]:
        return sorted(
            c.metadata.name for c in core.list_namespaced_config_map(namespace, **kw).items
        )

    assert names(label_selector="tier=web") == ["cm-0", "cm-1"]
    assert names(label_selector="tier==db,extra") == ["cm-2"]
    assert names(label_selector="tier!=web,!extra") == ["cm-3", "cm-4"]
    assert names(label_selector="tier in (db,cache)") == ["cm-2", "cm-3", "cm-4"]
    assert names(label_selector="tier notin (db, cache),extra") == ["cm-0"]
    assert names(field_selector="metadata.name=cm-3") == ["cm-3"]
    assert names(field_selector=f"metadata.namespace={namespace},metadata.name!=cm-0") == [
        "cm-1",
        "cm-2",
        "cm-3",
        "cm-4",
    ]

    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_config_map(namespace, limit=2, _continue=token)
        seen += [c.metadata.name for c in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count > 0
    assert seen == [f"cm-{i}" for i in range(5)] and pages == 3

    everywhere = core.list_config_map_for_all_namespaces(label_selector="tier=web")
    assert {c.metadata.namespace for c in everywhere.items} == {namespace}


def test_cluster_scoped_and_bad_name(core: client.CoreV1Api) -> None:
    namespaces = {n.metadata.name for n in core.list_namespace().items}
    assert {"default", "kube-system", "kube-public"} <= namespaces
    ns = core.read_namespace("default")
    assert ns.status.phase == "Active"
    assert ns.metadata.labels["kubernetes.io/metadata.name"] == "default"
    with pytest.raises(client.ApiException) as bad:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="Bad_Name")))
    assert bad.value.status == 422
    assert "metadata.name" in bad.value.body


def test_deployment_status_and_scale(
    sandbox: SandboxHandle, apps: client.AppsV1Api, namespace: str
) -> None:
    made = apps.create_namespaced_deployment(namespace, deployment("web", image="nowhere/none"))
    assert isinstance(made, client.V1Deployment)
    assert made.metadata.generation == 1
    assert made.spec.strategy.type == "RollingUpdate" and made.spec.revision_history_limit == 10

    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert isinstance(scale, client.V1Scale)
    assert scale.spec.replicas == 1 and scale.status.selector == "app=web"
    patched = apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 3}})
    assert patched.spec.replicas == 3
    dep = apps.read_namespaced_deployment("web", namespace)
    assert dep.spec.replicas == 3 and dep.metadata.generation == 2

    # A PUT of the main resource may not change status; the status subresource may
    # not change the spec.
    # (resourceVersion cleared: an unconditional PUT, as the controllers write status too)
    dep.metadata.resource_version = None
    dep.status = client.V1DeploymentStatus(observed_generation=99)
    dep.spec.replicas = 2
    after = apps.replace_namespaced_deployment("web", namespace, dep)
    assert after.spec.replicas == 2 and after.status.observed_generation != 99
    after.metadata.resource_version = None
    after.status = client.V1DeploymentStatus(observed_generation=77, replicas=0)
    after.spec.replicas = 5
    via_status = apps.replace_namespaced_deployment_status("web", namespace, after)
    assert via_status.status.observed_generation == 77 and via_status.spec.replicas == 2


def test_service_cluster_ip_and_pod_delete(
    sandbox: SandboxHandle, core: client.CoreV1Api, namespace: str
) -> None:
    svc = core.create_namespaced_service(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
        },
    )
    assert svc.spec.cluster_ip and svc.spec.cluster_ip.startswith("127.")
    assert svc.spec.ports[0].protocol == "TCP" and svc.spec.type == "ClusterIP"
    again = core.read_namespaced_service("web", namespace)
    assert again.spec.cluster_ip == svc.spec.cluster_ip
    deleted = core.delete_namespaced_service("web", namespace)
    assert isinstance(deleted, client.V1Service) and deleted.metadata.name == "web"


def test_selector_is_immutable(apps: client.AppsV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, deployment("fixed", image="nowhere/none"))
    patch = {
        "spec": {
            "selector": {"matchLabels": {"app": "other"}},
            "template": {"metadata": {"labels": {"app": "other"}}},
        }
    }
    with pytest.raises(client.ApiException) as refused:
        apps.patch_namespaced_deployment("fixed", namespace, patch)
    assert refused.value.status == 422
    assert "spec.selector" in refused.value.body and "immutable" in refused.value.body
