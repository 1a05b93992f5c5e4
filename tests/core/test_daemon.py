"""The per-user daemon and its client, with a real manager client API behind.

Covers: the socket is 0600 in a 0700 directory; hello checks the version;
intercept resolves name/namespace/port (naming rules) and returns the
intercept, with a NothingListening warning when the local port is closed;
a second intercept on the same local port is PortHeld naming the holder;
status and intercepts list what the CLI made; env returns the agent's copy
of the app environment; subscribers get intercept and traffic pushes;
leave removes it, an unknown name is a lookup error; errors keep code,
title and hint across the socket; quit leaves everything and stops the
daemon; a ready InterceptSpec (as the TUI's wizard makes) is accepted, the
`session` op reports the context's session and `revoke` ends someone's
intercept; a real `python -m core.daemon` is started on demand and quits.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from core.daemon import ContextHandle, Daemon
from core.daemon_client import DaemonClient
from core.errors import RemoteError
from core.models import ServicePortInfo, ServiceRef, WorkloadInfo
from core.protocol import AgentHello, InterceptSpec, TrafficEvent
from core.session import Session
from tests.core.managerkit import Agents, Manager, serve_manager
from tests.core.test_session import UrlBox

ORDERS = WorkloadInfo(
    namespace="demo",
    name="orders",
    kind="Deployment",
    services=[
        ServiceRef(name="orders", ports=[ServicePortInfo(name="http", port=80, target_port="http")])
    ],
)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[Daemon, DaemonClient, Manager, Agents]]:
    async with anyio.create_task_group() as tg, serve_manager() as manager:
        manager.registry.register_agent(
            AgentHello(
                pod="orders-a",
                namespace="demo",
                pod_ip="127.0.0.1",
                workload_kind="Deployment",
                workload_name="orders",
                ports=[],
                tunnel_port=7777,
                env={"DB_URL": "postgres://db"},
            )
        )
        agents = Agents(tg)

        async def factory(context: str | None, kubeconfig: str | None) -> ContextHandle:
            session = Session(
                context=context or "test", connector=UrlBox(manager.url).connect, opener=agents.open
            )

            async def workloads(namespace: str) -> list[WorkloadInfo]:
                return [w for w in [ORDERS] if w.namespace == namespace]

            return ContextHandle(context or "test", "demo", session, workloads)

        daemon = Daemon(path=tmp_path / "run" / "d.sock", factory=factory)
        await tg.start(daemon.serve)
        client = await DaemonClient.connect(daemon.path, start=False)
        yield daemon, client, manager, agents
        if daemon.path.exists():  # stop it the way users do: sessions end cleanly
            with contextlib.suppress(Exception):
                await client.call("quit")
        await client.aclose()
        with anyio.fail_after(10):
            await daemon.stopped()
        tg.cancel_scope.cancel()


async def test_intercept_status_env_leave_quit(
    rig: tuple[Daemon, DaemonClient, Manager, Agents], tmp_path: Path
) -> None:
    daemon, client, manager, agents = rig
    assert stat.S_IMODE(daemon.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(daemon.path.parent.stat().st_mode) == 0o700
    watcher = await DaemonClient.connect(daemon.path, start=False)
    pushes = await watcher.subscribe()
    said: list[str] = []
    result = await client.call(
        "intercept", {"request": {"name": "orders", "port": "1"}}, progress=said.append
    )
    info = result["intercept"]
    assert info["spec"]["name"] == "orders-demo"
    assert info["spec"]["service_port_name"] == "http"
    assert info["spec"]["mechanism"] == "tcp"
    assert any("looking up workloads" in s for s in said)
    assert [w.code for w in client.last_warnings] == ["nothing-listening"]
    with anyio.fail_after(10):
        push = await pushes.__anext__()
    assert push.topic == "intercept" and push.data["id"] == info["id"]
    agents.tunnels["orders-a"].push(TrafficEvent(pod="orders-a", intercept=info["id"]))
    with anyio.fail_after(10):
        while (push := await pushes.__anext__()).topic != "traffic":
            pass
    assert push.data["pod"] == "orders-a"
    with pytest.raises(RemoteError) as held:
        await client.call(
            "intercept",
            {
                "request": {
                    "name": "other",
                    "workload": "orders",
                    "port": "1",
                    "http_header": ["x=1"],
                }
            },
        )
    assert held.value.remote_code == "port-held" and "'orders-demo'" in held.value.title
    status = await client.call("status")
    assert status["pid"] == os.getpid()
    [session] = status["sessions"]
    assert session["connected"] and session["mode"] == "single-user"
    assert [i["spec"]["name"] for i in session["intercepts"]] == ["orders-demo"]
    assert await client.call("env", {"name": "orders-demo"}) == {"DB_URL": "postgres://db"}
    with pytest.raises(RemoteError) as unknown:
        await client.call("intercept", {"request": {"name": "ordrs"}})
    assert unknown.value.remote_code == "unknown-workload" and "orders" in unknown.value.hint
    left = await client.call("leave", {"name": "orders-demo"})
    assert left["intercept"]["state"] == "removed"
    assert manager.registry.intercepts() == []
    with pytest.raises(RemoteError) as missing:
        await client.call("leave", {"name": "orders-demo"})
    assert missing.value.remote_code == "lookup"
    await client.call("intercept", {"request": {"name": "orders", "port": "2"}})
    await client.call("quit")
    await client.aclose()  # the daemon stops once its quitter hung up
    with anyio.fail_after(10):
        while daemon.path.exists():
            await anyio.sleep(0.05)
    assert manager.registry.intercepts() == []
    await watcher.aclose()


async def test_daemon_started_on_demand(tmp_path: Path) -> None:
    path = tmp_path / "x" / "d.sock"
    client = await DaemonClient.connect(path, start=True, timeout=30)
    try:
        assert client.daemon_pid != os.getpid()
        status = await client.call("status")
        assert status["sessions"] == []
        await client.call("quit")
    finally:
        await client.aclose()
    with anyio.fail_after(15):
        while path.exists():
            await anyio.sleep(0.05)
    assert sys.executable  # the daemon ran under this interpreter


async def test_ready_spec_session_and_revoke(
    rig: tuple[Daemon, DaemonClient, Manager, Agents],
) -> None:
    _, client, manager, _ = rig
    spec = InterceptSpec(
        name="wizard",
        namespace="demo",
        workload="orders",
        service="orders",
        service_port=80,
        service_port_name="http",
        mechanism="http",
        headers={"x-user": "bob"},
        local_port=5,
    )
    result = await client.call("intercept", {"spec": spec.model_dump(mode="json")})
    assert result["intercept"]["spec"]["headers"] == {"x-user": "bob"}
    session = await client.call("session", {})
    assert session["connected"] and [i["spec"]["name"] for i in session["intercepts"]] == ["wizard"]
    everyone = await client.call("intercepts", {"all": True})
    [theirs] = everyone
    revoked = await client.call("revoke", {"id": theirs["id"]})
    assert revoked["state"] == "removed"
    assert manager.registry.intercepts() == []
