"""Fixtures: a real stand-in ingress (HTTP + HTTPS), a running workstation preview server,
the developer's local server (``workstation``) and the sandbox with the demo."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import anyio
import pytest
from aiohttp import web

from core.kube import Kube
from core.preview_models import PreviewTarget
from core.preview_server import PreviewServer
from tests.core.apiserver import SandboxApi, serve_api
from tests.preview.ingress import FakeIngress, fake_ingress
from tests.preview.sandboxdemo import install_demo, wait_ready


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def ingress() -> AsyncIterator[FakeIngress]:
    async with fake_ingress() as server:
        yield server


def direct_dial(ingress: FakeIngress):  # type: ignore[no-untyped-def]
    """``dial``: the ingress Service's ports 80/443 are the fake's HTTP/HTTPS ports."""

    async def dial(target: PreviewTarget) -> tuple[str, int]:
        return "127.0.0.1", {80: ingress.http_port, 443: ingress.https_port}[target.port]

    return dial


@pytest.fixture
async def preview(ingress: FakeIngress) -> AsyncIterator[PreviewServer]:
    server = PreviewServer(direct_dial(ingress), ssl_context=ingress.client_context())
    async with anyio.create_task_group() as tg:
        await tg.start(server.run)
        yield server
        tg.cancel_scope.cancel()


@pytest.fixture
async def workstation() -> AsyncIterator[int]:
    """The developer's local server: says where the request landed."""

    async def handle(request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        return web.json_response({"where": "workstation", "headers": headers})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=30), cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        yield session


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[SandboxApi]:
    """A real sandbox API server over HTTP (no controllers, no kubelet)."""
    async with serve_api(tmp_path) as server:
        yield server


# The real sandbox (API server, controllers, kubelet) for the end-to-end tests.
from tests.sandbox.conftest import SandboxHandle, sandbox  # noqa: E402

__all__ = ["sandbox"]


@pytest.fixture(scope="session")
def demo(sandbox: SandboxHandle) -> Iterator[Kube]:
    """The demo's ingress, ``hello`` and ``orders`` running; a Kube as the developer."""
    install_demo(sandbox)
    kube = Kube.from_kubeconfig(str(sandbox.kubeconfig), sandbox.developer_context)
    wait_ready(kube, [("ingress", "ingress-controller"), ("default", "hello"), ("shop", "orders")])
    yield kube
    kube.close()
