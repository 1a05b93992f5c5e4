"""The manager's preview router, installed with ``--preview-domain``, in the sandbox.

The whole path: ``waylay install`` with a preview domain D puts the manager
(serving the router on its pod's preview port) and the ``waylay-preview``
Ingress for ``*.D`` in the sandbox; a core ``Session`` (as the read-only
developer, through port-forwards) makes a personal intercept of the demo's
``hello`` and asks the manager for a preview URL over the client API. The
request is sent to the demo ingress's address, as a browser resolving
``<token>.D`` through the wildcard DNS record would send it.

Covers: a request for ``<token>.D`` goes demo ingress -> manager's router ->
demo ingress (Host ``hello.waylay.local``) -> the agent -> the developer's
machine, with the intercept's header and the extra header added, while the
same request for the app's own host reaches the app; TLS from the manager's
pod to the ingress (SNI and Host the L5 hostname) is verified against the
cluster's CA: shop's certificate passes, a host without one answers 502; a revoked URL answers the
router's 404 page through the ingress, and so does a URL whose intercept was
left; re-installing without a preview domain removes the Ingress, the
Service port and the router (the client API then answers ``unavailable``);
uninstall leaves no Ingress behind.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import anyio
import pytest

from core.errors import ManagerRefused
from core.install import InstallOptions, install, uninstall
from core.kube import Kube
from core.preview import (
    PREVIEW_INGRESS,
    PreviewTarget,
    create_cluster_preview,
    detect_defaults,
    revoke_cluster_preview,
)
from core.protocol import AUTO_HEADER, InterceptSpec, PathRule
from core.session import Session, kube_connector, kube_opener
from sandbox.demo import HOSTS
from tests.sandbox.conftest import SandboxHandle

pytestmark = pytest.mark.timeout(240)

DOMAIN = "preview.waylay.test"
INGRESS_API = "networking.k8s.io/v1"


def ingress_address(kube: Kube) -> str:
    """The demo ingress's LoadBalancer address (its ClusterIP until it has one)."""
    service = kube.get("v1", "Service", "ingress", "ingress") or {}
    lb = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return str(lb[0]["ip"]) if lb and lb[0].get("ip") else str(service["spec"]["clusterIP"])


async def get(http: aiohttp.ClientSession, url: str, host: str) -> tuple[int, Any]:
    async with http.get(url, headers={"Host": host}) as resp:
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()


async def wait_status(
    http: aiohttp.ClientSession, url: str, host: str, status: int, timeout: float = 30
) -> Any:
    """Poll until the answer has ``status`` (the ingress and router pick changes up)."""
    last: tuple[int, Any] = (0, None)
    with anyio.move_on_after(timeout):
        while True:
            last = await get(http, url, host)
            if last[0] == status:
                return last[1]
            await anyio.sleep(0.2)
    pytest.fail(f"{host}{url}: still {last} after {timeout:g}s, wanted {status}")


async def test_router_in_the_manager_through_demo_ingress(
    sandbox: SandboxHandle, demo: Kube, workstation: int, http: aiohttp.ClientSession
) -> None:
    admin = Kube.from_kubeconfig(str(sandbox.kubeconfig), sandbox.admin_context)
    try:
        await anyio.to_thread.run_sync(
            install, admin, InstallOptions(timeout=120, preview_domain=DOMAIN)
        )
        ingress = admin.get(INGRESS_API, "Ingress", PREVIEW_INGRESS, "waylay")
        assert ingress is not None and ingress["spec"]["rules"][0]["host"] == f"*.{DOMAIN}"
        await _previews_reach_the_workstation(sandbox, demo, workstation, http)

        # Upgrading without a preview domain takes the router away.
        upgrade = await anyio.to_thread.run_sync(install, admin, InstallOptions(timeout=120))
        assert f"Ingress {PREVIEW_INGRESS}: deleted (no preview domain any more)" in upgrade.steps
        assert admin.get(INGRESS_API, "Ingress", PREVIEW_INGRESS, "waylay") is None
        service = admin.get("v1", "Service", "waylay-manager", "waylay")
        assert service is not None
        assert "preview" not in {p["name"] for p in service["spec"]["ports"]}
        await _router_unavailable(sandbox, demo)

        # Uninstall deletes the Ingress even when not told about the domain.
        await anyio.to_thread.run_sync(
            install, admin, InstallOptions(timeout=120, preview_domain=DOMAIN)
        )
        assert admin.get(INGRESS_API, "Ingress", PREVIEW_INGRESS, "waylay") is not None
    finally:
        said: list[str] = []
        await anyio.to_thread.run_sync(uninstall, admin, InstallOptions(timeout=120), said.append)
        gone = admin.get(INGRESS_API, "Ingress", PREVIEW_INGRESS, "waylay")
        admin.close()
    assert f"Ingress {PREVIEW_INGRESS}: deleted" in said and gone is None


def _session(sandbox: SandboxHandle, demo: Kube) -> Session:
    return Session(
        context=sandbox.developer_context,
        connector=kube_connector(demo),
        opener=kube_opener(demo),
    )


async def _previews_reach_the_workstation(
    sandbox: SandboxHandle, demo: Kube, workstation: int, http: aiohttp.ClientSession
) -> None:
    session = _session(sandbox, demo)
    address = ingress_address(demo)
    url = f"http://{address}/hi?via=preview"
    async with anyio.create_task_group() as tg:
        await tg.start(session.run)
        assert session.session_id is not None
        spec = InterceptSpec(
            name="hello-default",
            namespace="default",
            workload="hello",
            service="hello",
            service_port=80,
            service_port_name="http",
            mechanism="http",
            headers={AUTO_HEADER: f"{session.session_id}:hello-default"},
            path=PathRule(kind="prefix", value="/"),
            local_port=workstation,
        )
        with anyio.fail_after(150):
            info = await session.intercept(spec)
        defaults = await detect_defaults(demo, "default", "hello")
        assert defaults is not None
        target = PreviewTarget.from_defaults(defaults)
        entry = await create_cluster_preview(
            session.request, "hello-default", target, {"X-Reviewer": "alice"}
        )
        assert entry is not None, "the manager should serve previews (installed with a domain)"
        assert entry.url == f"http://{entry.token}.{DOMAIN}/"
        host = f"{entry.token}.{DOMAIN}"

        seen = await wait_status(http, url, host, 200)
        assert seen.get("where") == "workstation", seen
        assert seen["headers"][AUTO_HEADER] == info.id
        assert seen["headers"]["x-reviewer"] == "alice"

        status, direct = await get(http, url, "hello.waylay.local")
        assert status == 200 and direct.get("app") == "hello", direct
        assert AUTO_HEADER not in {k.lower() for k in direct["headers"]}

        # TLS from the manager's pod to the ingress, SNI and Host the L5 hostname,
        # verified against the cluster's CA: shop's certificate passes...
        shop = PreviewTarget(host="ingress.ingress", port=443, tls=True, hostname=HOSTS[0])
        tls_entry = await create_cluster_preview(session.request, "hello-default", shop)
        assert tls_entry is not None
        orders_url = f"http://{address}/orders/7"
        tls_host = f"{tls_entry.token}.{DOMAIN}"
        seen = await wait_status(http, orders_url, tls_host, 200)
        headers = {k.lower(): v for k, v in seen["headers"].items()}
        assert seen["app"] == "orders" and headers["x-forwarded-proto"] == "https"
        assert headers["host"] == HOSTS[0] and headers[AUTO_HEADER] == info.id
        # ... while hello has no certificate of its own at the ingress: refused.
        untrusted = PreviewTarget(host="ingress.ingress", port=443, tls=True, hostname=HOSTS[1])
        bad = await create_cluster_preview(session.request, "hello-default", untrusted)
        assert bad is not None
        status, text = await get(http, url, f"{bad.token}.{DOMAIN}")
        assert status == 502 and "TLS verification" in text, (status, text)

        await revoke_cluster_preview(session.request, entry.token)
        page = await wait_status(http, url, host, 404, timeout=5)
        assert "Preview not available" in page

        # A URL dies with its intercept.
        second = await create_cluster_preview(session.request, "hello-default", target)
        assert second is not None
        other = f"{second.token}.{DOMAIN}"
        assert (await wait_status(http, url, other, 200))["where"] == "workstation"
        await session.leave("hello-default")
        assert "Preview not available" in await wait_status(http, url, other, 404, timeout=5)
        session.stop()
        tg.cancel_scope.cancel()


async def _router_unavailable(sandbox: SandboxHandle, demo: Kube) -> None:
    session = _session(sandbox, demo)
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(60):
            await tg.start(session.run)
        with pytest.raises(ManagerRefused) as err:
            await session.request("preview-list", {})
        assert err.value.problem_code == "unavailable"
        session.stop()
        tg.cancel_scope.cancel()
