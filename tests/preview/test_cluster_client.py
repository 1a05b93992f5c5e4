"""Cluster preview URLs asked for over the real client API (WebSocket, wire models).

The manager here is ``webhook.client_api.ClientApi`` with its dispatch
extended by the preview router, exactly as the wiring note says (preview ops
go to ``PreviewRouter.handle_op``); the client is ``core.manager_client``.

Covers: ``create_cluster_preview`` gets a ``https://<token>.D/`` URL for our
intercept and a request through it reaches the ingress with the intercept's
and the extra headers; ``list_cluster_previews`` shows it without header
values; ``revoke_cluster_preview`` kills it (404); against a manager with no
router, ``create_cluster_preview`` returns None (serve it from the
workstation instead); a refused request (no such intercept) is raised.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web

from core.errors import ManagerRefused
from core.manager_client import ManagerClient
from core.preview_cluster import (
    create_cluster_preview,
    list_cluster_previews,
    revoke_cluster_preview,
)
from core.preview_models import PreviewTarget
from core.protocol import ClientHello, InterceptSpec, Request
from tests.preview.conftest import direct_dial
from tests.preview.ingress import HOSTNAME, FakeIngress
from webhook.apikeys import MemorySettingsStore
from webhook.client_api import ClientApi
from webhook.preview import PREVIEW_OPS, PreviewRouter, serve_router
from webhook.registry import Registry, Session, WorkloadKey

DOMAIN = "preview.example.test"
TARGET = PreviewTarget(host="ingress.ingress", port=443, tls=True, hostname=HOSTNAME)


class RoutedApi(ClientApi):
    """The client API with the preview ops wired to the router."""

    router: PreviewRouter | None = None

    async def _dispatch(self, session: Session, req: Request, watched: set[WorkloadKey]) -> Any:
        if req.op in PREVIEW_OPS and self.router is not None:
            return await self.router.handle_op(session, req.op, req.params)
        return await super()._dispatch(session, req, watched)


@contextlib.asynccontextmanager
async def manager(api: ClientApi) -> AsyncIterator[str]:
    runner = web.AppRunner(api.app(), shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1/client"
    finally:
        await runner.cleanup()


def spec(session_id: str) -> dict[str, Any]:
    return InterceptSpec(
        name="orders-shop",
        namespace="shop",
        workload="orders",
        service="orders",
        service_port=80,
        mechanism="http",
        headers={"x-waylay-intercept-id": f"{session_id}:orders-shop"},
    ).model_dump(mode="json")


async def test_cluster_preview_over_the_client_api(
    ingress: FakeIngress, http: aiohttp.ClientSession
) -> None:
    registry = Registry()
    api = RoutedApi(registry, MemorySettingsStore(), None)
    api.router = PreviewRouter(
        registry, DOMAIN, direct_dial(ingress), ssl_context=ingress.client_context()
    )
    async with (
        manager(api) as url,
        ManagerClient.open(url, ClientHello(client="me@host"), context="t") as client,
        anyio.create_task_group() as tg,
    ):
        _, port = await tg.start(serve_router, api.router, "127.0.0.1", 0)
        await client.request("create", {"spec": spec(client.session_id)})

        with pytest.raises(ManagerRefused) as err:
            await create_cluster_preview(client.request, "nope", TARGET)
        assert err.value.problem_code == "not-found"

        entry = await create_cluster_preview(
            client.request, "orders-shop", TARGET, {"X-Extra": "1"}
        )
        assert entry is not None
        assert entry.url == f"https://{entry.token}.{DOMAIN}/"
        host = f"{entry.token}.{DOMAIN}"
        async with http.get(f"http://127.0.0.1:{port}/echo", headers={"Host": host}) as resp:
            seen = await resp.json()
        assert seen["headers"]["x-waylay-intercept-id"] == f"{client.session_id}:orders-shop"
        assert seen["headers"]["x-extra"] == "1"

        listed = await list_cluster_previews(client.request)
        assert [(e["token"], e["header_names"]) for e in listed] == [
            (entry.token, ["x-waylay-intercept-id", "X-Extra"])
        ]
        revoked = await revoke_cluster_preview(client.request, entry.token)
        assert revoked.token == entry.token
        async with http.get(f"http://127.0.0.1:{port}/echo", headers={"Host": host}) as resp:
            assert resp.status == 404
        tg.cancel_scope.cancel()


async def test_manager_without_router_means_workstation() -> None:
    registry = Registry()
    async with (
        manager(ClientApi(registry, MemorySettingsStore(), None)) as url,
        ManagerClient.open(url, ClientHello(client="me@host"), context="t") as client,
    ):
        await client.request("create", {"spec": spec(client.session_id)})
        assert await create_cluster_preview(client.request, "orders-shop", TARGET) is None
