"""Fixtures: a real sandbox (HTTPS, tokens, RBAC, admission, GC, controllers, kubelet).

``sandbox`` is one sandbox per test session, served from its own thread and
event loop on a free port; tests isolate themselves with their own namespace
(``namespace`` fixture). ``SandboxHandle.call`` runs a coroutine on the
sandbox's loop (for what only the server can do, such as compacting the watch
history).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config

from sandbox.cluster import Cluster
from sandbox.server import ADMIN_CONTEXT, DEVELOPER_CONTEXT, Sandbox
from tests.sandbox.helpers import serving

T = TypeVar("T")


@dataclass
class SandboxHandle:
    sandbox: Sandbox
    loop: asyncio.AbstractEventLoop
    kubeconfig: Path
    admin_context: str = ADMIN_CONTEXT
    developer_context: str = DEVELOPER_CONTEXT

    @property
    def url(self) -> str:
        return self.sandbox.url

    @property
    def cluster(self) -> Cluster:
        assert self.sandbox.cluster is not None
        return self.sandbox.cluster

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def token(self, user: str) -> str:
        assert self.sandbox.authenticator is not None
        return self.sandbox.authenticator.token_for(user)

    def api_client(self, context: str = ADMIN_CONTEXT) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig), context=context)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    box = Sandbox(tmp_path_factory.mktemp("sandbox"), bookmark_interval=1.0, persist=False)
    with serving(box, thread_name="sandbox") as loop:
        yield SandboxHandle(box, loop, box.kubeconfig)


@pytest.fixture
def namespace(sandbox: SandboxHandle) -> Iterator[str]:
    """A fresh namespace, deleted (with everything in it) afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    api = client.CoreV1Api(sandbox.api_client())
    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        try:
            api.delete_namespace(name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        api.api_client.close()


@pytest.fixture
def core(sandbox: SandboxHandle) -> Iterator[client.CoreV1Api]:
    api = sandbox.api_client()
    yield client.CoreV1Api(api)
    api.close()


@pytest.fixture
def apps(sandbox: SandboxHandle) -> Iterator[client.AppsV1Api]:
    api = sandbox.api_client()
    yield client.AppsV1Api(api)
    api.close()
