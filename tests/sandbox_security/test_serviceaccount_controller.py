"""sandbox.controllers.serviceaccount: every namespace gets a ``default`` ServiceAccount.

Covers: a namespace created after the controller started gets one; namespaces
that existed before it started get one; a deleted ``default`` account comes
back; the controller is registered in ``sandbox.controllers.CONTROLLERS``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
import pytest

from sandbox import controllers
from sandbox.cluster import Cluster
from sandbox.controllers import serviceaccount


async def _wait_for_account(cluster: Cluster, namespace: str) -> None:
    with anyio.fail_after(10):
        while cluster.store.get("serviceaccounts", namespace, "default") is None:
            await anyio.sleep(0.01)


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster()
    await c.create(
        "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "early"}}
    )
    task = asyncio.create_task(serviceaccount.run(c))
    try:
        yield c
    finally:
        task.cancel()
        with anyio.CancelScope(shield=True):
            try:
                await task
            except asyncio.CancelledError:
                pass
        c.close()


async def test_new_and_existing_namespaces_get_default_account(cluster: Cluster) -> None:
    await _wait_for_account(cluster, "early")
    await cluster.create(
        "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    )
    await _wait_for_account(cluster, "shop")


async def test_deleted_default_account_comes_back(cluster: Cluster) -> None:
    await _wait_for_account(cluster, "early")
    first = cluster.store.get("serviceaccounts", "early", "default")
    assert first is not None
    await cluster.delete("serviceaccounts", "early", "default")
    await _wait_for_account(cluster, "early")
    again = cluster.store.get("serviceaccounts", "early", "default")
    assert again is not None
    assert again["metadata"]["uid"] != first["metadata"]["uid"]


def test_registered() -> None:
    assert serviceaccount.run in controllers.CONTROLLERS
