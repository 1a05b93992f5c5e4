"""HTTP/2 prior knowledge (h2c, e.g. gRPC) on a personal-intercept port, per stream.

Covers: several concurrent streams on one client connection are matched one by
one (header match -> workstation over the tunnel, others -> the app over one
shared app connection); request bodies, response bodies and trailers
(grpc-status) arrive intact; a body larger than the stream windows flows
(flow control relayed); events are per stream with protocol h2; when nothing
is intercepted the h2c bytes pass through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import pytest

from core.protocol import TrafficEvent
from core.tunnel import LocalTarget
from tests.agent.conftest import AgentEnv, intercept, wait_for


@dataclass
class H2Server:
    """A tiny h2c server: answers '<name>:<path>:<body length>' plus a grpc-status trailer."""

    name: str
    port: int = 0
    connections: int = 0
    server: asyncio.Server | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        paths: dict[int, str] = {}
        sizes: dict[int, int] = {}
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        paths[ev.stream_id] = dict(ev.headers)[":path"]  # type: ignore[arg-type]
                        sizes[ev.stream_id] = 0
                    elif isinstance(ev, h2.events.DataReceived):
                        sizes[ev.stream_id] += len(ev.data)
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    if isinstance(ev, h2.events.StreamEnded | h2.events.RequestReceived) and (
                        getattr(ev, "stream_ended", None) is not None
                        or isinstance(ev, h2.events.StreamEnded)
                    ):
                        sid = ev.stream_id
                        if sid not in paths:
                            continue
                        body = f"{self.name}:{paths.pop(sid)}:{sizes.pop(sid)}".encode()
                        conn.send_headers(
                            sid, [(":status", "200"), ("content-type", "application/grpc")]
                        )
                        conn.send_data(sid, body)
                        conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
                writer.write(conn.data_to_send())
                await writer.drain()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.transport.abort()


@pytest.fixture
async def h2_servers(agent_env: AgentEnv) -> AsyncIterator[tuple[H2Server, H2Server]]:
    app, ws = H2Server("app"), H2Server("workstation")
    await app.start()
    await ws.start()
    # point the agent's HTTP port at the h2 app
    agent_env.agent.listeners[0].ctx.app_port = app.port
    yield app, ws
    app.stop()
    ws.stop()


class H2Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.conn.initiate_connection()
        self.bodies: dict[int, bytes] = {}
        self.trailers: dict[int, dict[str, str]] = {}
        self.done: set[int] = set()

    async def request(self, path: str, headers: dict[str, str], body: bytes = b"") -> int:
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", "POST"), (":scheme", "http"), (":authority", "hello"), (":path", path)]
        self.conn.send_headers(sid, hdrs + list(headers.items()), end_stream=not body)
        self.bodies[sid] = b""
        self._pending = getattr(self, "_pending", {})
        self._pending[sid] = body
        await self._pump()
        return sid

    async def _pump(self) -> None:
        for sid, body in list(self._pending.items()):
            while body:
                window = self.conn.local_flow_control_window(sid)
                size = min(window, self.conn.max_outbound_frame_size, len(body))
                if size <= 0:
                    break
                self.conn.send_data(sid, body[:size], end_stream=size == len(body))
                body = body[size:]
            self._pending[sid] = body
            if not body:
                del self._pending[sid]
        self.writer.write(self.conn.data_to_send())
        await self.writer.drain()

    async def wait(self, sids: list[int]) -> None:
        async with asyncio.timeout(10):
            while not set(sids) <= self.done:
                data = await self.reader.read(65536)
                assert data, "agent closed the connection"
                for ev in self.conn.receive_data(data):
                    if isinstance(ev, h2.events.DataReceived):
                        self.bodies[ev.stream_id] += ev.data
                        self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.TrailersReceived):
                        self.trailers[ev.stream_id] = dict(ev.headers)  # type: ignore[arg-type]
                    elif isinstance(ev, h2.events.StreamEnded):
                        self.done.add(ev.stream_id)
                    elif isinstance(ev, h2.events.StreamReset):
                        raise AssertionError(f"stream {ev.stream_id} reset")
                await self._pump()


async def test_h2c_streams_routed_one_by_one(
    agent_env: AgentEnv, h2_servers: tuple[H2Server, H2Server]
) -> None:
    app, ws = h2_servers
    info = intercept("grpc", headers={"x-dev": "alice"})
    agent_env.apply(info)
    client_t = await agent_env.connect(targets={info.id: LocalTarget("127.0.0.1", ws.port)})
    reader, writer = await asyncio.open_connection("127.0.0.1", agent_env.http_port)
    client = H2Client(reader, writer)
    s1 = await client.request("/svc/A", {"x-dev": "alice"}, b"x" * 10)
    s2 = await client.request("/svc/B", {"x-dev": "bob"})
    big = b"y" * 300_000  # larger than the default 64 KiB windows
    s3 = await client.request("/svc/C", {}, big)
    s4 = await client.request("/svc/D", {"x-dev": "alice"}, big)
    await client.wait([s1, s2, s3, s4])
    assert client.bodies[s1] == b"workstation:/svc/A:10"
    assert client.bodies[s2] == b"app:/svc/B:0"
    assert client.bodies[s3] == b"app:/svc/C:300000"
    assert client.bodies[s4] == b"workstation:/svc/D:300000"
    assert all(client.trailers[s] == {"grpc-status": "0"} for s in (s1, s2, s3, s4))
    assert app.connections == 1  # one shared app connection
    writer.close()
    await wait_for(lambda: len([m for m in client_t.messages if isinstance(m, TrafficEvent)]) >= 2)
    evs = [m for m in client_t.messages if isinstance(m, TrafficEvent)]
    assert {e.path for e in evs} == {"/svc/A", "/svc/D"}
    assert all(e.protocol == "h2" and e.routed == "workstation" and e.status == 200 for e in evs)


async def test_h2c_pass_through_without_intercepts(
    agent_env: AgentEnv, h2_servers: tuple[H2Server, H2Server]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", agent_env.http_port)
    client = H2Client(reader, writer)
    sid = await client.request("/plain", {"x-dev": "alice"})
    await client.wait([sid])
    assert client.bodies[sid] == b"app:/plain:0"
    writer.close()
