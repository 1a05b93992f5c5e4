"""A preview URL of a real personal intercept, through the sandbox's demo ingress.

The whole path: ``waylay install`` puts the manager in the sandbox; a core
``Session`` (as the read-only developer, through port-forwards) makes a
personal intercept of the demo's ``hello``; the workstation preview server
reaches the demo ingress through a port-forward.

Covers: a request to the preview URL goes through the ingress and the agent
to the developer's machine, while the same request without the preview (no
header) reaches the app; when the intercept is left, the manager's event
kills the URL (``run_workstation_previews`` follows the session's events)
and it answers 404.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import anyio
import anyio.abc
import pytest

from core.install import InstallOptions, install
from core.kube import Kube
from core.preview import (
    PreviewTarget,
    detect_defaults,
    intercept_headers,
    run_workstation_previews,
)
from core.protocol import AUTO_HEADER, InterceptSpec, PathRule
from core.session import Session, kube_connector, kube_opener
from tests.sandbox.conftest import SandboxHandle

pytestmark = pytest.mark.timeout(240)


async def _get(http: aiohttp.ClientSession, url: str, host: str) -> tuple[int, Any]:
    async with http.get(url, headers={"Host": host}) as resp:
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()


async def test_preview_reaches_workstation_direct_reaches_app(
    sandbox: SandboxHandle, demo: Kube, workstation: int, http: aiohttp.ClientSession
) -> None:
    admin = Kube.from_kubeconfig(str(sandbox.kubeconfig), sandbox.admin_context)
    try:
        await anyio.to_thread.run_sync(install, admin, InstallOptions(timeout=120))
    finally:
        admin.close()
    session = Session(
        context=sandbox.developer_context,
        connector=kube_connector(demo),
        opener=kube_opener(demo),
    )
    async with anyio.create_task_group() as tg:
        await tg.start(session.run)
        server = await tg.start(run_workstation_previews, demo, session.events())
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
        entry = server.create(
            info.id, PreviewTarget.from_defaults(defaults), intercept_headers(spec)
        )
        preview_url = f"http://127.0.0.1:{server.port}/hi"
        preview_host = f"{entry.token}.preview.localhost:{server.port}"

        with anyio.fail_after(30):
            while True:
                status, seen = await _get(http, preview_url, preview_host)
                if status == 200 and seen.get("where") == "workstation":
                    break
                await anyio.sleep(0.2)
        assert seen["headers"][AUTO_HEADER] == info.id
        assert seen["headers"]["x-forwarded-host"] == "hello.waylay.local"

        ingress_host, ingress_port = await server.forwarder.dial(entry.target)
        status, direct = await _get(
            http, f"http://{ingress_host}:{ingress_port}/hi", "hello.waylay.local"
        )
        assert status == 200
        assert direct.get("app") == "hello"

        # Leaving the intercept kills its URL, told by the manager's event.
        await session.leave("hello-default")
        with anyio.fail_after(10):
            while True:
                try:
                    if (await _get(http, preview_url, preview_host))[0] == 404:
                        break
                except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
                    # a request racing the leave may be cut mid-body: by design, the
                    # URL dies at once, in-flight bodies included
                    pass
                await anyio.sleep(0.05)
        assert server.entries() == []
        session.stop()
        tg.cancel_scope.cancel()
