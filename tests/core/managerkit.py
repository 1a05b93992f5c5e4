"""A real traffic manager client API and real agent tunnel ends, for session tests.

The manager is ``webhook.client_api.ClientApi`` served over real HTTP and
WebSocket. Agents are registered in its registry (what its agent API does on
an ``AgentHello``), and every tunnel a session opens is served by a real
``core.tunnel.AgentTunnel`` at the other end of a socket pair.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
from aiohttp import web

from core.protocol import AgentHello, InterceptSpec
from core.tunnel import AgentTunnel
from webhook.apikeys import MemorySettingsStore
from webhook.client_api import ClientApi
from webhook.registry import Registry


class InstantPreparer:
    """Agents are already there: prepare just reports progress, as the rollout does."""

    async def prepare(self, spec: InterceptSpec, progress: Any) -> dict[str, Any]:
        await progress({"message": f"agent present in {spec.workload}"})
        return {"ready": True}


@dataclass
class Manager:
    registry: Registry
    url: str
    runner: web.AppRunner

    def add_agent(self, pod: str, workload: str = "orders", namespace: str = "demo") -> None:
        self.registry.register_agent(
            AgentHello(
                pod=pod,
                namespace=namespace,
                pod_ip="127.0.0.1",
                workload_kind="Deployment",
                workload_name=workload,
                ports=[],
                tunnel_port=7777,
            )
        )


@contextlib.asynccontextmanager
async def serve_manager(registry: Registry | None = None) -> AsyncIterator[Manager]:
    registry = registry or Registry(session_ttl=3.0)
    api = ClientApi(registry, MemorySettingsStore(), InstantPreparer())
    runner = web.AppRunner(api.app(), shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Manager(registry, f"http://127.0.0.1:{port}/v1/client", runner)
    finally:
        await runner.cleanup()


@dataclass
class Agents:
    """Opens tunnels: the session's end is returned, an AgentTunnel serves the other."""

    tg: anyio.abc.TaskGroup
    tunnels: dict[str, AgentTunnel] = field(default_factory=dict)
    refuse: set[str] = field(default_factory=set)

    async def open(self, pod: str, namespace: str, port: int) -> anyio.abc.ByteStream:
        if pod in self.refuse:
            raise ConnectionRefusedError(f"{pod} refuses")
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        theirs.setblocking(False)
        agent_end = await anyio.abc.UNIXSocketStream.from_socket(theirs)
        tunnel = AgentTunnel(agent_end, pod=pod)
        self.tunnels[pod] = tunnel
        self.tg.start_soon(self._serve, tunnel)
        return await anyio.abc.UNIXSocketStream.from_socket(ours)

    @staticmethod
    async def _serve(tunnel: AgentTunnel) -> None:
        with contextlib.suppress(Exception):
            await tunnel.run()
