"""Watches through the real ``kubernetes`` client, sync and ``kubernetes.aio``.

Covers: a watch from a list's resourceVersion gets only later changes (no
replay); resuming from the last seen version (as the client does after the
server closes the stream) yields only what happened since; a version older
than the retained history is 410 (the sync client raises it with retries off);
watch without a version starts with synthetic ADDED events; BOOKMARK events
when asked for; label-selector watches see an object that stops matching as
DELETED; ``timeoutSeconds`` ends the stream; ``kubernetes.aio`` CRUD and watch.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.aio import client as aio_client
from kubernetes.aio import config as aio_config
from kubernetes.aio import watch as aio_watch

from tests.sandbox.conftest import SandboxHandle
from tests.sandbox.helpers import configmap


def _events(core: client.CoreV1Api, namespace: str, **kw: Any) -> list[tuple[str, str]]:
    w = watch.Watch()
    return [
        (e["type"], e["object"].metadata.name)
        for e in w.stream(core.list_namespaced_config_map, namespace, **kw)
    ]


def test_watch_from_version_does_not_replay(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, configmap("before"))
    listed = core.list_namespaced_config_map(namespace)
    version = listed.metadata.resource_version
    core.create_namespaced_config_map(namespace, configmap("after"))
    core.patch_namespaced_config_map("before", namespace, {"data": {"x": "1"}})

    w = watch.Watch()
    seen = []
    for event in w.stream(
        core.list_namespaced_config_map, namespace, resource_version=version, timeout_seconds=5
    ):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 2:
            w.stop()
    assert seen == [("ADDED", "after"), ("MODIFIED", "before")]

    # Resume from the last version seen: nothing of the above comes again.
    resume_from = w.resource_version
    core.delete_namespaced_config_map("after", namespace)
    w2 = watch.Watch()
    for event in w2.stream(
        core.list_namespaced_config_map, namespace, resource_version=resume_from, timeout_seconds=5
    ):
        assert (event["type"], event["object"].metadata.name) == ("DELETED", "after")
        w2.stop()


def test_watch_without_version_lists_first(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, configmap("a"))
    core.create_namespaced_config_map(namespace, configmap("b"))
    # timeoutSeconds ends the stream by itself.
    assert _events(core, namespace, timeout_seconds=1) == [("ADDED", "a"), ("ADDED", "b")]


def test_too_old_version_is_410(
    sandbox: SandboxHandle, core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_config_map(namespace, configmap("old"))
    version = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, configmap("newer"))

    async def compact() -> int:
        return sandbox.cluster.compact()

    sandbox.call(compact())
    with pytest.raises(client.ApiException) as gone:
        _events(core, namespace, resource_version=version, timeout_seconds=5)
    assert gone.value.status == 410
    # A fresh list gives a version that works again.
    fresh = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, configmap("latest"))
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_config_map, namespace, resource_version=fresh, timeout_seconds=5
    ):
        assert event["object"].metadata.name == "latest"
        w.stop()


def test_bookmarks(core: client.CoreV1Api, namespace: str) -> None:
    version = core.list_namespaced_config_map(namespace).metadata.resource_version
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_config_map,
        namespace,
        resource_version=version,
        allow_watch_bookmarks=True,
        timeout_seconds=10,
    ):
        assert event["type"] == "BOOKMARK"
        assert int(w.resource_version) >= int(version)
        w.stop()
        break
    else:
        raise AssertionError("no BOOKMARK within the timeout")


def test_selector_watch_sees_object_leave(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, configmap("m", {"keep": "yes"}))
    version = core.list_namespaced_config_map(namespace).metadata.resource_version
    seen: list[tuple[str, str]] = []

    def changes() -> None:
        core.patch_namespaced_config_map("m", namespace, {"metadata": {"labels": {"keep": "no"}}})
        core.patch_namespaced_config_map("m", namespace, {"metadata": {"labels": {"keep": "yes"}}})

    t = threading.Thread(target=changes)
    t.start()
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_config_map,
        namespace,
        label_selector="keep=yes",
        resource_version=version,
        timeout_seconds=10,
    ):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 2:
            w.stop()
    t.join(10)
    assert seen == [("DELETED", "m"), ("ADDED", "m")]


async def test_aio_client_crud_and_watch(sandbox: SandboxHandle, namespace: str) -> None:
    api = await aio_config.new_client_from_config(
        config_file=str(sandbox.kubeconfig), context=sandbox.admin_context
    )
    async with api:
        core = aio_client.CoreV1Api(api)
        made = await core.create_namespaced_config_map(namespace, configmap("aio", a="1"))
        assert isinstance(made, aio_client.V1ConfigMap)
        listed = await core.list_namespaced_config_map(namespace)
        version = listed.metadata.resource_version
        await core.patch_namespaced_config_map("aio", namespace, {"data": {"a": "2"}})
        w = aio_watch.Watch()
        async with w:
            async for event in w.stream(
                core.list_namespaced_config_map,
                namespace,
                resource_version=version,
                timeout_seconds=5,
            ):
                assert event["type"] == "MODIFIED"
                assert event["object"].data == {"a": "2"}
                w.stop()
        await core.delete_namespaced_config_map("aio", namespace)
        with pytest.raises(aio_client.ApiException) as missing:
            await core.read_namespaced_config_map("aio", namespace)
        assert missing.value.status == 404
