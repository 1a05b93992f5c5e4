"""Fixtures for the sandbox runtime tests: a real Cluster with the kubelet and the
Service proxy running on it (no HTTP; the API server's own fixture adds that)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.cluster import Cluster
from sandbox.kubelet import Kubelet, KubeletConfig, Timings
from sandbox.services import ServiceProxy
from tests.sandbox_runtime.helpers import FAST


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Runtime:
    cluster: Cluster
    kubelet: Kubelet
    proxy: ServiceProxy


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    cluster = Cluster()
    for name in ("default", "shop"):
        await cluster.create("namespaces", {"metadata": {"name": name}})
    kubelet = Kubelet(cluster, cluster.ipam, KubeletConfig(state_dir=tmp_path, timings=FAST))
    await kubelet.start()
    assert kubelet.proxy is not None
    try:
        yield Runtime(cluster, kubelet, kubelet.proxy)
    finally:
        await kubelet.stop()
        cluster.close()


__all__ = ["Runtime", "Timings"]
