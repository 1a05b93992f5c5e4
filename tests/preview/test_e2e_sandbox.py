"""Preview URLs end to end against the sandbox's demo ingress controller.

A real sandbox (API server over HTTPS, controllers, kubelet running the demo
ingress controller and echo apps as processes) with the demo's ingress part
and two of its apps. The workstation preview server reaches the ingress
through real ``pods/portforward`` connections as the read-only developer.

Covers:
- the defaults detected for ``hello`` and ``orders`` are the demo's;
- a request through the preview URL goes through the demo ingress (routed by
  the L5 hostname) to the app with the intercept's header; the same request
  sent straight to the ingress has no header;
- TLS to the ingress with SNI ``shop.waylay.local`` verified against the
  cluster's CA (from the kubeconfig); a wrong CA answers a clear 502;
- a WebSocket is carried through the preview and the ingress to the app;
- a revoked URL answers 404;
- the manager's preview router, dialing the ingress Service's ClusterIP (as
  it does in its pod), serves ``<token>.D`` through the demo ingress over TLS,
  and 404s once the intercept is removed.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import pytest
import trustme

from core.kube import Kube
from core.preview import PreviewServer, PreviewTarget, detect_defaults
from core.preview_dial import PortForwardDial, ingress_trust
from core.protocol import InterceptSpec
from webhook.kube import AsyncKube
from webhook.preview import make_router, serve_router
from webhook.registry import Registry

pytestmark = pytest.mark.timeout(180)

HEADER = {"x-waylay-intercept-id": "e2e:hello-default"}


@pytest.fixture
async def served(demo: Kube) -> AsyncIterator[tuple[PreviewServer, PortForwardDial]]:
    dial = PortForwardDial(demo)
    server = PreviewServer(dial, ssl_context=ingress_trust(demo))
    async with anyio.create_task_group() as tg:
        await tg.start(dial.run)
        await tg.start(server.run)
        yield server, dial
        tg.cancel_scope.cancel()


async def _get(
    http: aiohttp.ClientSession, server: PreviewServer, token: str, path: str
) -> tuple[int, Any]:
    host = f"{token}.preview.localhost:{server.port}"
    async with http.get(f"http://127.0.0.1:{server.port}{path}", headers={"Host": host}) as r:
        if r.content_type == "application/json":
            return r.status, await r.json()
        return r.status, await r.text()


async def test_demo_defaults(demo: Kube) -> None:
    hello = await detect_defaults(demo, "default", "hello")
    orders = await detect_defaults(demo, "shop", "orders")
    assert hello is not None and orders is not None
    assert (hello.host, hello.port, hello.tls, hello.hostname) == (
        "ingress.ingress",
        80,
        False,
        "hello.waylay.local",
    )
    assert (orders.host, orders.port, orders.tls, orders.hostname) == (
        "ingress.ingress",
        443,
        True,
        "shop.waylay.local",
    )


async def test_preview_through_demo_ingress(
    served: tuple[PreviewServer, PortForwardDial], demo: Kube, http: aiohttp.ClientSession
) -> None:
    server, dial = served
    defaults = await detect_defaults(demo, "default", "hello")
    assert defaults is not None
    entry = server.create("e2e:hello-default", PreviewTarget.from_defaults(defaults), HEADER)
    status, seen = await _get(http, server, entry.token, "/greet?x=1")
    assert status == 200, seen
    assert seen["app"] == "hello"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-waylay-intercept-id"] == "e2e:hello-default"
    assert headers["host"] == "hello.waylay.local"

    # The same request straight to the ingress (same port-forward) has no header.
    host, port = await dial(entry.target)
    async with http.get(
        f"http://{host}:{port}/greet", headers={"Host": "hello.waylay.local"}
    ) as resp:
        direct = await resp.json()
    assert direct["app"] == "hello"
    assert "x-waylay-intercept-id" not in {k.lower() for k in direct["headers"]}

    server.revoke(entry.token)
    assert (await _get(http, server, entry.token, "/greet"))[0] == 404


async def test_tls_to_demo_ingress(
    served: tuple[PreviewServer, PortForwardDial], demo: Kube, http: aiohttp.ClientSession
) -> None:
    server, dial = served
    target = PreviewTarget(host="ingress.ingress", port=443, tls=True, hostname="shop.waylay.local")
    entry = server.create("e2e:orders-shop", target, {"x-waylay-intercept-id": "e2e:orders-shop"})
    status, seen = await _get(http, server, entry.token, "/orders/42")
    assert status == 200, seen
    assert seen["app"] == "orders"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-waylay-intercept-id"] == "e2e:orders-shop"
    assert headers["x-forwarded-proto"] == "https"

    wrong = ssl.create_default_context()
    trustme.CA().configure_trust(wrong)
    untrusting = PreviewServer(dial, ssl_context=wrong)
    async with anyio.create_task_group() as tg:
        await tg.start(untrusting.run)
        bad = untrusting.create("e2e:orders-shop", target, {})
        status, text = await _get(http, untrusting, bad.token, "/orders/42")
        tg.cancel_scope.cancel()
    assert status == 502
    assert "TLS verification" in text


async def test_websocket_through_demo_ingress(
    served: tuple[PreviewServer, PortForwardDial], http: aiohttp.ClientSession
) -> None:
    server, _ = served
    target = PreviewTarget(host="ingress.ingress", port=80, hostname="hello.waylay.local")
    entry = server.create("e2e:hello-default", target, HEADER)
    host = f"{entry.token}.preview.localhost:{server.port}"
    async with http.ws_connect(
        f"ws://127.0.0.1:{server.port}/chat/ws", headers={"Host": host}
    ) as ws:
        with anyio.fail_after(15):
            await ws.send_str("through the ingress")
            assert await ws.receive_str() == "through the ingress"


async def test_router_through_demo_ingress(demo: Kube, http: aiohttp.ClientSession) -> None:
    """The manager's router, dialing the ingress Service's ClusterIP as it does in a pod."""
    registry = Registry()
    session = registry.open_session("me@host", "me", session_id="e2e")
    registry.create(
        session.id,
        InterceptSpec(
            name="orders-shop",
            namespace="shop",
            workload="orders",
            service="orders",
            service_port=80,
            mechanism="http",
            headers={"x-waylay-intercept-id": "e2e:orders-shop"},
        ),
    )
    router = make_router(registry, "preview.test", AsyncKube(demo))
    target = {"host": "ingress.ingress", "port": 443, "tls": True, "hostname": "shop.waylay.local"}
    async with anyio.create_task_group() as tg:
        _, port = await tg.start(serve_router, router, "127.0.0.1", 0)
        entry = await router.handle_op(
            session, "preview-create", {"name": "orders-shop", "target": target}
        )
        host = f"{entry['token']}.preview.test"
        async with http.get(f"http://127.0.0.1:{port}/orders/7", headers={"Host": host}) as r:
            assert r.status == 200, await r.text()
            seen = await r.json()
        registry.remove(session.id, "orders-shop")
        async with http.get(f"http://127.0.0.1:{port}/orders/7", headers={"Host": host}) as r:
            gone = r.status
        tg.cancel_scope.cancel()
    assert seen["app"] == "orders"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-waylay-intercept-id"] == "e2e:orders-shop"
    assert headers["host"] == "shop.waylay.local"
    assert gone == 404
