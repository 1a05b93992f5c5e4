"""Cluster preview URLs asked for over the real client API (WebSocket, wire models).

The manager here is ``webhook.server.run_manager`` (as ``python -m webhook``
runs it) given a preview router: its client API dispatches the preview ops to
``PreviewRouter.handle_op`` and it serves the router on its preview port. The
client is ``core.manager_client``.

Covers: ``create_cluster_preview`` gets a ``https://<token>.D/`` URL for our
intercept and a request to the manager's preview port for ``<token>.D``
reaches the ingress with the intercept's and the extra headers;
``list_cluster_previews`` shows it without header values;
``revoke_cluster_preview`` kills it (404); against a manager with no router
the preview ops answer ``unavailable`` with a hint and
``create_cluster_preview`` returns None (serve it from the workstation
instead); a refused request (no such intercept) is raised.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import pytest

from core.errors import ManagerRefused
from core.manager_client import ManagerClient
from core.preview_cluster import (
    create_cluster_preview,
    list_cluster_previews,
    revoke_cluster_preview,
)
from core.preview_models import PreviewTarget
from core.protocol import ClientHello, InterceptSpec
from tests.preview.conftest import direct_dial
from tests.preview.ingress import HOSTNAME, FakeIngress
from webhook.apikeys import MemorySettingsStore
from webhook.config import ManagerConfig
from webhook.preview import PreviewRouter
from webhook.registry import Registry
from webhook.server import Bound, run_manager

DOMAIN = "preview.example.test"
TARGET = PreviewTarget(host="ingress.ingress", port=443, tls=True, hostname=HOSTNAME)


@contextlib.asynccontextmanager
async def manager(registry: Registry, router: PreviewRouter | None) -> AsyncIterator[Bound]:
    config = ManagerConfig(
        agent_host="127.0.0.1",
        agent_port=0,
        client_port=0,
        preview_host="127.0.0.1",
        preview_port=0,
        use_cluster=False,
    )
    async with anyio.create_task_group() as tg:
        serve = functools.partial(run_manager, router=router)
        bound = await tg.start(serve, config, MemorySettingsStore(), registry, None)
        try:
            yield bound
        finally:
            tg.cancel_scope.cancel()


def client_url(bound: Bound) -> str:
    return "http://{}:{}/v1/client".format(*bound.client)


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
    router = PreviewRouter(
        registry, DOMAIN, direct_dial(ingress), ssl_context=ingress.client_context()
    )
    async with (
        manager(registry, router) as bound,
        ManagerClient.open(client_url(bound), ClientHello(client="me@host"), context="t") as client,
    ):
        assert bound.preview is not None
        port = bound.preview[1]
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


async def test_manager_without_router_means_workstation() -> None:
    registry = Registry()
    async with (
        manager(registry, None) as bound,
        ManagerClient.open(client_url(bound), ClientHello(client="me@host"), context="t") as client,
    ):
        assert bound.preview is None
        await client.request("create", {"spec": spec(client.session_id)})
        with pytest.raises(ManagerRefused) as err:
            await client.request("preview-list", {})
        assert err.value.problem_code == "unavailable"
        assert "--preview-domain" in err.value.hint
        assert await create_cluster_preview(client.request, "orders-shop", TARGET) is None
