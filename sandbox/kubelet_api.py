"""What the runtime (kubelet, Service proxy) needs from the API server's service layer.

This is the ``Cluster`` of docs/CONTRACTS.md, narrowed to the calls the
runtime makes, so the runtime can be typed and read without importing the
server. The in-process calls run as ``SYSTEM`` (the default ``user``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["ClusterAPI", "Obj", "StoreAPI"]

Obj = dict[str, Any]


class StoreAPI(Protocol):
    def get(self, resource: str, namespace: str | None, name: str) -> Obj | None: ...

    def list(self, resource: str, namespace: str | None = None) -> list[Obj]: ...


class ClusterAPI(Protocol):
    @property
    def store(self) -> StoreAPI: ...

    async def create(self, resource: str, obj: Obj, *, namespace: str | None = None) -> Obj: ...

    async def update(self, resource: str, obj: Obj, *, subresource: str | None = None) -> Obj: ...

    async def patch(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: str,
        subresource: str | None = None,
    ) -> Obj: ...

    async def delete(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        *,
        propagation: str = ...,
        preconditions: dict[str, Any] | None = ...,
        grace_period_seconds: int | None = ...,
    ) -> Obj: ...

    def subscribe(self, callback: Callable[[str, str, Obj], None]) -> None: ...
