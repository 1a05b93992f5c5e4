"""The manager's own Kubernetes access, as its service account.

In a real pod that is the in-cluster config (token and CA under
``/var/run/secrets/kubernetes.io/serviceaccount``); elsewhere (the sandbox's
kubelet, a developer running ``python -m webhook``) the kubeconfig in
``$KUBECONFIG``. Calls go through ``core.kube.Kube`` (dicts in, dicts out) in
a worker thread so the event loop never blocks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from core.kube import Kube
from core.models import ContextInfo

T = TypeVar("T")


def connect() -> Kube:
    """In-cluster config when there is one, else the kubeconfig in effect."""
    configuration = k8s_client.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        return Kube.from_kubeconfig()
    info = ContextInfo(
        name="in-cluster", cluster="in-cluster", user="serviceaccount", server=configuration.host
    )
    return Kube(k8s_client.ApiClient(configuration), info, "")


class AsyncKube:
    """``core.kube.Kube``'s calls, awaited in a worker thread."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await anyio.to_thread.run_sync(
            functools.partial(fn, *args, **kwargs), abandon_on_cancel=True
        )

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        return await self.call(self.kube.get, api_version, kind, name, namespace)

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        items, _ = await self.call(
            self.kube.list,
            api_version,
            kind,
            namespace,
            label_selector=label_selector,
            field_selector=field_selector,
        )
        return items

    async def create(
        self, api_version: str, kind: str, body: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        return await self.call(self.kube.create, api_version, kind, body, namespace)

    async def replace(
        self, api_version: str, kind: str, body: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        return await self.call(self.kube.replace, api_version, kind, body, namespace)

    async def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: str = "merge",
    ) -> dict[str, Any]:
        return await self.call(
            self.kube.patch, api_version, kind, name, patch, namespace, patch_type=patch_type
        )

    async def delete(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> bool:
        return await self.call(self.kube.delete, api_version, kind, name, namespace)
