"""The agent's manager session, against a real WebSocket manager stand-in.

Covers: the agent registers with AgentHello (pod, workload, ports, the app's
environment copied from WAYLAY_APP_ENV_*), gets AgentWelcome, heartbeats, and
applies InterceptsSnapshot messages (a personal intercept starts routing, an
empty snapshot stops it); when the manager goes away the agent keeps serving
pass-through and reconnects with back-off once it is back; the environment is
parsed into settings with clear errors; `python -m agent` without config exits
with a message saying what is missing; and the same session works against the
manager's real agent API (webhook.agent_api with its Registry): an intercept
created there routes traffic, removing it stops that.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
import pytest
from aiohttp import WSMsgType, web

from agent.app import Agent
from agent.config import ConfigError, from_env
from core.protocol import (
    AgentConfig,
    AgentHello,
    AgentWelcome,
    Heartbeat,
    InterceptsSnapshot,
    TakeoverPort,
    dump_message,
    parse_message,
)
from core.tunnel import LocalTarget
from tests.agent.conftest import SESSION, AgentEnv, intercept, wait_for
from tests.agent.httpclient import HttpConn


@dataclass
class FakeManager:
    hellos: list[AgentHello] = field(default_factory=list)
    heartbeats: int = 0
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            parsed = parse_message(msg.data)
            if isinstance(parsed, AgentHello):
                self.hellos.append(parsed)
                await ws.send_str(dump_message(AgentWelcome(agent_id=f"agent-{len(self.hellos)}")))
            elif isinstance(parsed, Heartbeat):
                self.heartbeats += 1
        return ws

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_get("/v1/agent", self.handler)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for ws in self.sockets:
            await ws.close()
        self.sockets.clear()
        assert self.runner is not None
        await self.runner.cleanup()

    async def push(self, snapshot: InterceptsSnapshot) -> None:
        for ws in self.sockets:
            if not ws.closed:
                await ws.send_str(dump_message(snapshot))


@pytest.fixture
async def manager() -> AsyncIterator[FakeManager]:
    fake = FakeManager()
    await fake.start()
    yield fake
    if fake.runner is not None:
        await fake.stop()


async def test_register_apply_and_reconnect(
    agent_env: AgentEnv, manager: FakeManager, workstation: tuple[str, int]
) -> None:
    agent: Agent = agent_env.agent
    agent.manager.url = f"http://127.0.0.1:{manager.port}/v1/agent"
    agent.manager.heartbeat = 0.05
    agent.manager.backoff_max = 0.3
    agent.manager.hello.env = {"GREETING": "hi"}
    agent_env.tg.start_soon(agent.manager.run)
    await wait_for(lambda: manager.hellos and manager.heartbeats >= 2)
    hello = manager.hellos[0]
    assert hello.pod == "hello-1" and hello.workload_name == "hello" and len(hello.ports) == 3
    assert hello.env == {"GREETING": "hi"} and agent.manager.agent_id == "agent-1"

    info = intercept("mine", headers={"x-dev": "alice"})
    await agent_env.connect(targets={info.id: LocalTarget(*workstation)})
    await manager.push(InterceptsSnapshot(intercepts=[info]))
    await wait_for(lambda: agent.table.plan(0).rules)
    conn = await HttpConn.open(agent_env.http_port)
    assert (await conn.request("/a", headers={"x-dev": "alice"})).text == "workstation:/a"

    # manager goes away: the agent keeps serving with what it has, then reconnects
    port = manager.port
    await manager.stop()
    assert (await conn.request("/b", headers={"x-dev": "alice"})).text == "workstation:/b"
    sock = await anyio.connect_tcp("127.0.0.1", agent_env.tcp_port)
    await sock.send(b"pass")
    with anyio.fail_after(5):
        assert await sock.receive() == b"pass"
    await sock.aclose()
    await manager.start(port)
    await wait_for(lambda: len(manager.hellos) >= 2, timeout=5)
    await manager.push(InterceptsSnapshot(intercepts=[]))
    await wait_for(lambda: not agent.table.plan(0).rules)
    assert (await conn.request("/c", headers={"x-dev": "alice"})).text == "app:/c"
    conn.close()
    assert agent.sessions.live(SESSION) is not None


def _config() -> str:
    return AgentConfig(
        workload_kind="Deployment",
        workload_name="hello",
        namespace="ns",
        manager_address="10.0.0.1:8081",
        ports=[
            TakeoverPort(
                service="hello",
                service_port=80,
                app_container="app",
                app_port=8080,
                agent_port=9900,
            )
        ],
    ).model_dump_json()


def test_settings_from_env() -> None:
    settings = from_env(
        {
            "WAYLAY_AGENT_CONFIG": _config(),
            "WAYLAY_POD_IP": "127.1.2.3",
            "WAYLAY_POD_NAME": "hello-abc",
            "WAYLAY_APP_ENV_DB_URL": "postgres://db",
        }
    )
    assert settings.app_host == "127.1.2.3" and settings.tunnel_host == "127.1.2.3"
    assert settings.app_env == {"DB_URL": "postgres://db"} and settings.pod_name == "hello-abc"
    real = from_env({"WAYLAY_AGENT_CONFIG": _config(), "POD_IP": "10.1.1.1"})
    assert real.tunnel_host == "127.0.0.1" and real.app_host == "10.1.1.1"
    with pytest.raises(ConfigError, match="WAYLAY_AGENT_CONFIG is not set"):
        from_env({})
    with pytest.raises(ConfigError, match="not a valid agent config"):
        from_env({"WAYLAY_AGENT_CONFIG": json.dumps({"workload_kind": "Pod"})})


def test_module_entry_point_explains_missing_config() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agent"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin"},
        timeout=30,
    )
    assert proc.returncode == 2 and "WAYLAY_AGENT_CONFIG is not set" in proc.stderr


async def test_with_the_real_manager_agent_api(
    agent_env: AgentEnv, workstation: tuple[str, int]
) -> None:
    """The agent against webhook.agent_api (the manager's real agent endpoint)."""
    from webhook.agent_api import agent_app
    from webhook.registry import Registry

    registry = Registry()
    runner = web.AppRunner(agent_app(registry), shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    agent = agent_env.agent
    agent.manager.url = f"http://127.0.0.1:{port}/v1/agent"
    agent_env.tg.start_soon(agent.manager.run)
    try:
        await wait_for(lambda: bool(registry.agents))
        registry.open_session("tester", "alice", session_id=SESSION)
        info = intercept("mine", headers={"x-dev": "alice"})
        registry.create(SESSION, info.spec)
        await wait_for(lambda: bool(agent.table.plan(0).rules))
        await agent_env.connect(targets={info.id: LocalTarget(*workstation)})
        conn = await HttpConn.open(agent_env.http_port)
        assert (await conn.request("/x", headers={"x-dev": "alice"})).text == "workstation:/x"
        registry.remove(SESSION, "mine")
        await wait_for(lambda: not agent.table.plan(0).rules)
        assert (await conn.request("/y", headers={"x-dev": "alice"})).text == "app:/y"
        conn.close()
    finally:
        await runner.cleanup()
