"""The manager's in-cluster preview router (``webhook.preview``), real sockets and TLS.

Covers:
- ``preview-create`` for an intercept of the calling session hands out
  ``https://<token>.<domain>/``; a request with that Host reaches the ingress
  with the intercept's header and the extra headers, Host/SNI set to the L5
  hostname (TLS verified); a direct request to the ingress has no header;
- WebSocket upgrades are carried through the router;
- the token dies (404) the moment its intercept is removed or its session
  expires, or when revoked (owner or admin only); other domains' hosts 404;
- errors: unknown intercept, a regex header without a value given, bad params;
- ``preview-list`` lists URLs with their intercept and header names only, the
  token (a capability) only to its owner and admins;
- ``ServiceDial`` sends ``name.namespace`` to the Service's ClusterIP (read
  from a real sandbox API server).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import pytest

from core.kube import Kube
from core.preview_models import PreviewTarget
from core.protocol import InterceptSpec
from tests.core.apiserver import SandboxApi
from tests.preview.conftest import direct_dial
from tests.preview.ingress import HOSTNAME, FakeIngress
from webhook.kube import AsyncKube
from webhook.preview import PreviewRouter, ServiceDial, serve_router
from webhook.registry import Registry, RegistryError, Session

DOMAIN = "preview.example.test"
TARGET = {"host": "ingress.ingress", "port": 443, "tls": True, "hostname": HOSTNAME}


def spec(name: str = "orders-shop", headers: dict[str, str] | None = None) -> InterceptSpec:
    return InterceptSpec(
        name=name,
        namespace="shop",
        workload="orders",
        service="orders",
        service_port=80,
        mechanism="http",
        headers=headers if headers is not None else {"x-waylay-intercept-id": f"s1:{name}"},
    )


class Router:
    def __init__(self, router: PreviewRouter, registry: Registry, port: int) -> None:
        self.router = router
        self.registry = registry
        self.port = port

    async def get(
        self, http: aiohttp.ClientSession, url: str, path: str = "/echo"
    ) -> tuple[int, Any]:
        host = url.removeprefix("https://").rstrip("/")
        async with http.get(f"http://127.0.0.1:{self.port}{path}", headers={"Host": host}) as r:
            if r.content_type == "application/json":
                return r.status, await r.json()
            return r.status, await r.text()


@pytest.fixture
async def router(ingress: FakeIngress) -> AsyncIterator[Router]:
    registry = Registry()
    preview = PreviewRouter(
        registry, DOMAIN, direct_dial(ingress), ssl_context=ingress.client_context()
    )
    async with anyio.create_task_group() as tg:
        _, port = await tg.start(serve_router, preview, "127.0.0.1", 0)
        yield Router(preview, registry, port)
        tg.cancel_scope.cancel()


def session(reg: Registry, sid: str = "s1", *, admin: bool = False) -> Session:
    return reg.open_session("me@host", f"user-{sid}", admin=admin, session_id=sid)


async def create(r: Router, s: Session, name: str = "orders-shop", **params: Any) -> Any:
    return await r.router.handle_op(s, "preview-create", {"name": name, "target": TARGET, **params})


async def test_request_reaches_ingress_with_header(
    router: Router, ingress: FakeIngress, http: aiohttp.ClientSession
) -> None:
    s = session(router.registry)
    router.registry.create(s.id, spec())
    entry = await create(router, s, headers={"X-Tenant": "blue"})
    assert entry["url"] == f"https://{entry['token']}.{DOMAIN}/"
    assert entry["intercept_id"] == "s1:orders-shop"
    status, seen = await router.get(http, entry["url"], "/echo/orders?q=1")
    assert status == 200
    assert seen["headers"]["x-waylay-intercept-id"] == "s1:orders-shop"
    assert seen["headers"]["x-tenant"] == "blue"
    assert seen["host"] == HOSTNAME and seen["tls"] is True
    assert seen["path"] == "/echo/orders?q=1"
    assert ingress.sni[-1] == HOSTNAME
    async with http.get(f"http://127.0.0.1:{ingress.http_port}/echo") as resp:
        assert "x-waylay-intercept-id" not in (await resp.json())["headers"]


async def test_websocket_through_router(router: Router, http: aiohttp.ClientSession) -> None:
    s = session(router.registry)
    router.registry.create(s.id, spec())
    entry = await create(router, s)
    host = f"{entry['token']}.{DOMAIN}"
    async with http.ws_connect(
        f"ws://127.0.0.1:{router.port}/ws", headers={"Host": host}, protocols=("chat",)
    ) as ws:
        with anyio.fail_after(10):
            hello = await ws.receive_json()
            assert hello["headers"]["x-waylay-intercept-id"] == "s1:orders-shop"
            await ws.send_str("ping")
            assert await ws.receive_str() == "echo:ping"


async def test_token_dies_with_its_intercept(router: Router, http: aiohttp.ClientSession) -> None:
    reg = router.registry
    s = session(reg)
    reg.create(s.id, spec())
    reg.create(s.id, spec("catalog-shop"))
    orders = await create(router, s)
    catalog = await create(router, s, "catalog-shop")
    assert (await router.get(http, orders["url"]))[0] == 200

    reg.remove(s.id, "orders-shop")
    status, text = await router.get(http, orders["url"])
    assert status == 404 and "intercept has ended" in text
    assert (await router.get(http, catalog["url"]))[0] == 200

    reg.close_session(s.id, "no heartbeat")
    assert (await router.get(http, catalog["url"]))[0] == 404
    assert router.router.table.entries() == []


async def test_revoke_owner_or_admin(router: Router, http: aiohttp.ClientSession) -> None:
    reg = router.registry
    owner, other, admin = session(reg), session(reg, "s2"), session(reg, "s3", admin=True)
    reg.create(owner.id, spec())
    one, two = await create(router, owner), await create(router, owner)

    with pytest.raises(RegistryError) as err:
        await router.router.handle_op(other, "preview-revoke", {"token": one["token"]})
    assert err.value.problem.code == "forbidden"
    await router.router.handle_op(owner, "preview-revoke", {"token": one["token"]})
    assert (await router.get(http, one["url"]))[0] == 404
    await router.router.handle_op(admin, "preview-revoke", {"token": two["token"]})
    assert (await router.get(http, two["url"]))[0] == 404
    with pytest.raises(RegistryError) as err:
        await router.router.handle_op(owner, "preview-revoke", {"token": two["token"]})
    assert err.value.problem.code == "not-found"


async def test_errors_and_listing(router: Router, http: aiohttp.ClientSession) -> None:
    reg = router.registry
    s = session(reg)
    with pytest.raises(RegistryError) as err:
        await create(router, s)
    assert err.value.problem.code == "not-found"

    reg.create(s.id, spec(headers={"x-user": "alice|bob"}))
    with pytest.raises(RegistryError) as err:
        await create(router, s)
    assert err.value.problem.code == "bad-request"
    assert "x-user" in err.value.problem.title
    entry = await create(router, s, headers={"X-User": "alice"})
    assert entry["headers"] == {"X-User": "alice"}

    with pytest.raises(RegistryError) as err:
        await router.router.handle_op(s, "preview-create", {"name": "orders-shop"})
    assert err.value.problem.code == "bad-request"

    listed = await router.router.handle_op(s, "preview-list", {})
    assert [(e["token"], e["intercept_id"], e["header_names"]) for e in listed] == [
        (entry["token"], "s1:orders-shop", ["X-User"])
    ]
    assert "headers" not in listed[0]
    other = await router.router.handle_op(session(reg, "s2"), "preview-list", {})
    assert [(e["intercept_id"], e["token"], e["url"]) for e in other] == [
        ("s1:orders-shop", "", "")
    ]
    admin = await router.router.handle_op(session(reg, "s3", admin=True), "preview-list", {})
    assert admin[0]["token"] == entry["token"]

    async with http.get(
        f"http://127.0.0.1:{router.port}/", headers={"Host": f"{entry['token']}.other.test"}
    ) as resp:
        assert resp.status == 404


async def test_service_dial_uses_cluster_ip(api: SandboxApi) -> None:
    service = await api.create(
        "services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "gw", "namespace": "demo"},
            "spec": {"selector": {"app": "gw"}, "ports": [{"name": "http", "port": 80}]},
        },
    )
    ip = service["spec"]["clusterIP"]
    kube = AsyncKube(Kube.from_kubeconfig(str(api.kubeconfig), "admin"))
    dial = ServiceDial(kube)
    assert await dial(PreviewTarget(host="gw.demo", port=80)) == (ip, 80)
    assert await dial(PreviewTarget(host="gw.demo.svc.cluster.local", port=80)) == (ip, 80)
    assert await dial(PreviewTarget(host="gw.example.com", port=443)) == ("gw.example.com", 443)
