"""Real servers and a real agent for the agent tests.

- ``app``: an aiohttp server standing in for the app container (``app:<path>``,
  ``/echo`` echoes the body, ``/ws`` is a WebSocket echo, ``/close`` hangs up);
- ``workstation``: the developer's local server (``workstation:<path>``);
- ``echo_server``: a raw TCP server that echoes, reports half-closes and can reset;
- ``agent_env``: a running :class:`agent.app.Agent` in front of ``app`` and
  ``echo_server`` (no manager), with helpers to apply intercepts and open
  client tunnels.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from aiohttp import WSMsgType, web

from agent.app import Agent
from agent.config import AgentSettings
from core.protocol import AgentConfig, InterceptInfo, InterceptSpec, Message, PathRule, TakeoverPort
from core.tunnel import ClientTunnel, LocalTarget


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Freezable(anyio.abc.ByteStream):
    """A byte stream that can be frozen: it then neither reads nor writes (a hung peer)."""

    def __init__(self, inner: anyio.abc.ByteStream) -> None:
        self.inner = inner
        self.frozen = anyio.Event()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self.frozen.is_set():
            await anyio.sleep_forever()
        data = await self.inner.receive(max_bytes)
        if self.frozen.is_set():
            await anyio.sleep_forever()
        return data

    async def send(self, item: bytes) -> None:
        if not self.frozen.is_set():
            await self.inner.send(item)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


def _app(name: str) -> web.Application:
    async def hello(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        resp = web.Response(text=f"{name}:{request.path}")
        resp.headers["x-served-by"] = name
        resp.headers["x-peer-port"] = str(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        resp.headers["x-body-len"] = str(len(body))
        return resp

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        return web.Response(body=body, headers={"x-served-by": name})

    async def ws(request: web.Request) -> web.StreamResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == WSMsgType.TEXT:
                await sock.send_str(f"{name}:{msg.data}")
        return sock

    async def close(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        raise asyncio.CancelledError

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/ws", ws)
    app.router.add_get("/close", close)
    app.router.add_route("*", "/{tail:.*}", hello)
    return app


async def _serve(app: web.Application) -> AsyncIterator[tuple[str, int]]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield ("127.0.0.1", port)
    finally:
        await runner.cleanup()


@pytest.fixture
async def app() -> AsyncIterator[tuple[str, int]]:
    async for addr in _serve(_app("app")):
        yield addr


@pytest.fixture
async def workstation() -> AsyncIterator[tuple[str, int]]:
    async for addr in _serve(_app("workstation")):
        yield addr


@dataclass
class EchoServer:
    """Raw TCP: echoes; b"RESET" makes it reset; records what it saw."""

    host: str = "127.0.0.1"
    port: int = 0
    eofs: int = 0
    resets: int = 0
    connections: int = 0
    server: asyncio.Server | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while data := await reader.read(65536):
                if data.startswith(b"RESET"):
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                writer.write(data)
                await writer.drain()
            self.eofs += 1
            writer.write(b"bye")
            await writer.drain()
        except ConnectionError:
            self.resets += 1
        finally:
            writer.close()


@pytest.fixture
async def echo_server() -> AsyncIterator[EchoServer]:
    echo = EchoServer()
    echo.server = await asyncio.start_server(echo.handle, "127.0.0.1", 0)
    echo.port = echo.server.sockets[0].getsockname()[1]
    try:
        yield echo
    finally:
        echo.server.close()
        for w in echo.writers:
            w.transport.abort()


SESSION = "sess-a"
OTHER = "sess-b"


def intercept(
    name: str,
    *,
    session: str = SESSION,
    port: int = 80,
    headers: dict[str, str] | None = None,
    path: PathRule | None = None,
    mechanism: str = "http",
    protocol: str = "TCP",
    age: int = 0,
) -> InterceptInfo:
    spec = InterceptSpec(
        name=name,
        namespace="ns",
        workload="hello",
        service="hello",
        service_port=port,
        protocol=protocol,  # type: ignore[arg-type]
        mechanism=mechanism,  # type: ignore[arg-type]
        headers=headers or {},
        path=path,
    )
    return InterceptInfo(
        id=f"{session}:{name}",
        spec=spec,
        session_id=session,
        owner=f"user-{session}",
        created=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=age),
    )


@dataclass
class Client:
    tunnel: ClientTunnel
    sock: Freezable
    messages: list[Message]
    targets: dict[str, LocalTarget]


@dataclass
class AgentEnv:
    agent: Agent
    tg: anyio.abc.TaskGroup
    http_port: int
    """Agent's port in front of the HTTP app (service port 80)."""
    tcp_port: int
    """Agent's port in front of the raw echo server (service port 9000)."""
    udp_port: int
    """Agent's UDP port (service port 53) in front of a UDP echo."""
    clients: list[Client] = field(default_factory=list)

    def apply(self, *intercepts: InterceptInfo) -> None:
        self.agent.apply(list(intercepts))

    async def connect(
        self,
        session: str = SESSION,
        *,
        targets: dict[str, LocalTarget] | None = None,
        watch_all: bool = False,
        ping_interval: float = 2.0,
        ping_timeout: float = 6.0,
    ) -> Client:
        host, port = self.agent.tunnels.address
        sock = Freezable(await anyio.connect_tcp(host, port))
        messages: list[Message] = []
        table = dict(targets or {})
        tunnel = ClientTunnel(
            sock,
            session_id=session,
            resolve=table.get,
            watch_all=watch_all,
            on_message=messages.append,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
        )
        await self.tg.start(tunnel.run)
        await wait_for(lambda: self.agent.sessions.live(session) is not None)
        client = Client(tunnel, sock, messages, table)
        self.clients.append(client)
        return client


async def wait_for(cond, timeout: float = 5.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    with anyio.fail_after(timeout):
        while not cond():
            await anyio.sleep(0.01)


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"app:" + data, addr)  # type: ignore[attr-defined]


@pytest.fixture
async def agent_env(app: tuple[str, int], echo_server: EchoServer) -> AsyncIterator[AgentEnv]:
    loop = asyncio.get_running_loop()
    udp_t, _ = await loop.create_datagram_endpoint(_UdpEcho, local_addr=("127.0.0.1", 0))
    udp_port = udp_t.get_extra_info("sockname")[1]
    ports = [
        TakeoverPort(
            service="hello", service_port=80, app_container="app", app_port=app[1], agent_port=0
        ),
        TakeoverPort(
            service="hello",
            service_port=9000,
            app_container="app",
            app_port=echo_server.port,
            agent_port=0,
        ),
        TakeoverPort(
            service="hello",
            service_port=53,
            protocol="UDP",
            app_container="app",
            app_port=udp_port,
            agent_port=0,
        ),
    ]
    settings = AgentSettings(
        config=AgentConfig(
            workload_kind="Deployment",
            workload_name="hello",
            namespace="ns",
            manager_address="127.0.0.1:1",
            ports=ports,
            tunnel_port=0,
        ),
        pod_name="hello-1",
        namespace="ns",
        pod_ip="127.0.0.1",
        app_host="127.0.0.1",
        tunnel_host="127.0.0.1",
        head_timeout=1.0,
    )
    agent = Agent(settings)
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: agent.run(manager=False, task_status=task_status))
        env = AgentEnv(
            agent,
            tg,
            http_port=agent.listeners[0].address[1],
            tcp_port=agent.listeners[1].address[1],
            udp_port=agent.udp[0].address[1],
        )
        try:
            yield env
        finally:
            for client in env.clients:
                with contextlib.suppress(Exception):
                    await client.tunnel.aclose()
            tg.cancel_scope.cancel()
    udp_t.close()
