"""Deletion: finalizers, owner-reference garbage collection and namespace termination.

Covers: an object with a finalizer gets a deletionTimestamp and stays until
the finalizer is removed; background deletion removes dependents after the
owner; a dependent with a second live owner survives and loses only the dead
reference; Orphan propagation keeps dependents and strips the reference;
Foreground deletion keeps the owner (``foregroundDeletion``) until blocking
dependents are gone; deleting a Deployment removes its ReplicaSets and pods;
deleting a namespace marks it Terminating, refuses new content (403), deletes
everything in it, then removes it; a new namespace gets its ``default``
ServiceAccount.
"""

from __future__ import annotations

import uuid

from kubernetes import client

from tests.sandbox.helpers import configmap, deployment, wait_for


def _owned(name: str, owner: client.V1ConfigMap, *, block: bool = False, **extra: object) -> dict:
    body = configmap(name)
    body["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": owner.metadata.name,
            "uid": owner.metadata.uid,
            "blockOwnerDeletion": block,
        }
    ]
    body["metadata"].update(extra)
    return body


def _exists(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_config_map(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_finalizer_holds_object(core: client.CoreV1Api, namespace: str) -> None:
    body = configmap("held")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    core.create_namespaced_config_map(namespace, body)
    core.delete_namespaced_config_map("held", namespace)
    held = core.read_namespaced_config_map("held", namespace)
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": None}})
    assert not _exists(core, namespace, "held")


def test_background_and_shared_owners(core: client.CoreV1Api, namespace: str) -> None:
    owner = core.create_namespaced_config_map(namespace, configmap("owner"))
    other = core.create_namespaced_config_map(namespace, configmap("other"))
    core.create_namespaced_config_map(namespace, _owned("child", owner))
    shared = _owned("shared", owner)
    shared["metadata"]["ownerReferences"].append(
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": other.metadata.uid}
    )
    core.create_namespaced_config_map(namespace, shared)
    core.delete_namespaced_config_map("owner", namespace)
    wait_for(lambda: not _exists(core, namespace, "child"), what="child collected")

    def shared_reparented() -> bool:
        refs = core.read_namespaced_config_map("shared", namespace).metadata.owner_references
        return [r.name for r in refs] == ["other"]

    wait_for(shared_reparented, what="shared keeps only its live owner")


def test_orphan(core: client.CoreV1Api, namespace: str) -> None:
    owner = core.create_namespaced_config_map(namespace, configmap("owner"))
    core.create_namespaced_config_map(namespace, _owned("child", owner))
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Orphan")
    assert not _exists(core, namespace, "owner")
    child = core.read_namespaced_config_map("child", namespace)
    assert not child.metadata.owner_references


def test_foreground(core: client.CoreV1Api, namespace: str) -> None:
    owner = core.create_namespaced_config_map(namespace, configmap("owner"))
    core.create_namespaced_config_map(
        namespace, _owned("child", owner, block=True, finalizers=["example.com/hold"])
    )
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Foreground")
    waiting = core.read_namespaced_config_map("owner", namespace)
    assert waiting.metadata.deletion_timestamp is not None
    assert "foregroundDeletion" in waiting.metadata.finalizers
    wait_for(
        lambda: core.read_namespaced_config_map("child", namespace).metadata.deletion_timestamp,
        what="child marked for deletion",
    )
    assert _exists(core, namespace, "owner")
    core.patch_namespaced_config_map("child", namespace, {"metadata": {"finalizers": None}})
    wait_for(lambda: not _exists(core, namespace, "owner"), what="owner released")


def test_deployment_cascade(apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, deployment("gone", replicas=2, image="nowhere/x"))
    wait_for(
        lambda: len(core.list_namespaced_pod(namespace, label_selector="app=gone").items) == 2,
        what="two pods",
    )
    apps.delete_namespaced_deployment("gone", namespace)
    wait_for(
        lambda: (
            not apps.list_namespaced_replica_set(namespace).items
            and not core.list_namespaced_pod(namespace).items
        ),
        what="replicasets and pods collected",
    )


def test_namespace_termination(core: client.CoreV1Api) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(
        lambda: core.list_namespaced_service_account(name).items, what="default ServiceAccount"
    )
    held = configmap("held")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    core.create_namespaced_config_map(name, held)
    core.create_namespaced_config_map(name, configmap("plain"))
    core.delete_namespace(name)
    assert core.read_namespace(name).status.phase == "Terminating"
    try:
        core.create_namespaced_config_map(name, configmap("late"))
        raise AssertionError("created content in a terminating namespace")
    except client.ApiException as exc:
        assert exc.status == 403
    wait_for(lambda: not _exists(core, name, "plain"), what="content deleted")
    assert core.read_namespace(name).status.phase == "Terminating"  # held by the finalizer
    core.patch_namespaced_config_map("held", name, {"metadata": {"finalizers": None}})

    def namespace_gone() -> bool:
        try:
            core.read_namespace(name)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(namespace_gone, what="namespace removed")
