"""Fixtures for the sandbox runtime tests.

``runtime``: a real ``Cluster`` (no HTTP) with the kubelet and its Service
proxy running on it, with CrashLoopBackOff delays shortened for tests.
``sandbox``, ``namespace``, ``core``, ``apps``: the API server's fixtures (a
real HTTPS sandbox in its own thread), imported so the end-to-end tests of
this folder get their own instance.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.cluster import Cluster
from sandbox.kubelet import Kubelet, KubeletConfig
from sandbox.services import ServiceProxy
from tests.sandbox.conftest import apps, core, namespace, sandbox
from tests.sandbox_runtime.helpers import FAST

__all__ = ["Runtime", "apps", "core", "namespace", "runtime", "sandbox"]


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
