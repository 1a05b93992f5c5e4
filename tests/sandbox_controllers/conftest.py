"""Fixtures: an in-process sandbox ``Cluster`` with its controllers running.

No kubelet runs: tests mark pods Ready themselves (``helpers.mark_ready``), and
``StandInNode`` binds new pods to the node and finishes graceful pod deletions,
the way the kubelet would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sandbox.cluster import Cluster

from .helpers import StandInNode, control_plane


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[Cluster, StandInNode]]:
    c = Cluster()
    try:
        await c.create(
            "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}
        )
        async with control_plane(c) as node:
            yield c, node
    finally:
        c.close()


@pytest.fixture
def cluster(sandbox: tuple[Cluster, StandInNode]) -> Cluster:
    return sandbox[0]


@pytest.fixture
def node(sandbox: tuple[Cluster, StandInNode]) -> StandInNode:
    return sandbox[1]
