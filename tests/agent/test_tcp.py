"""Pass-through and global intercepts on TCP (and UDP) through a real agent.

Covers: pass-through (both the splice(2) relay and the asyncio-protocol
fallback) relays bytes both ways, keeps a half-close (the app still
answers after the client's EOF), passes a reset on (app reset -> client sees
ECONNRESET), keeps an idle connection open, and resets the client when the app
is unreachable; a global intercept sends each new connection down a tunnel
stream to the workstation (half-close kept), while connections opened before
it keep going to the app; a workstation whose local port refuses resets the
client; fail-open: when the client tunnel closes, the in-flight intercepted
connection is closed cleanly (EOF, not reset) and new connections go to the
app at once; a missed heartbeat ends the tunnel the same way; per-connection
traffic events for the owner; UDP datagrams per source flow to the app and,
under a global UDP intercept, to the workstation.
"""

from __future__ import annotations

import asyncio
import socket

import anyio
import pytest

from agent.listener import CONNECTION_OPENED
from core.protocol import TrafficEvent
from core.tunnel import LocalTarget
from tests.agent.conftest import SESSION, AgentEnv, EchoServer, intercept, wait_for


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _read_exactly(reader: asyncio.StreamReader, n: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(n), 5)


@pytest.fixture(params=["splice", "protocol"])
def relay_kind(request: pytest.FixtureRequest, agent_env: AgentEnv) -> str:
    """Both pass-through implementations: zero-copy splice and the asyncio-protocol fallback."""
    agent_env.agent.listeners[1].use_splice = request.param == "splice"
    return str(request.param)


async def test_pass_through_half_close_reset_idle(
    agent_env: AgentEnv, echo_server: EchoServer, relay_kind: str
) -> None:
    reader, writer = await _open(agent_env.tcp_port)
    payload = bytes(range(256)) * 4096
    writer.write(payload)
    assert await _read_exactly(reader, len(payload)) == payload
    writer.write_eof()  # half-close: the app sees EOF and still answers
    assert await asyncio.wait_for(reader.read(), 5) == b"bye"
    await wait_for(lambda: echo_server.eofs == 1)
    writer.close()

    # reset from the app reaches the client as a reset
    reader, writer = await _open(agent_env.tcp_port)
    writer.write(b"RESET")
    with pytest.raises(ConnectionResetError):
        with anyio.fail_after(5):
            while await reader.read(100):
                pass
    writer.close()

    # an idle connection stays usable
    reader, writer = await _open(agent_env.tcp_port)
    await anyio.sleep(0.3)
    writer.write(b"still here")
    assert await _read_exactly(reader, 10) == b"still here"
    writer.close()


async def test_pass_through_app_down_resets(
    agent_env: AgentEnv, echo_server: EchoServer, relay_kind: str
) -> None:
    assert echo_server.server is not None
    echo_server.server.close()
    await echo_server.server.wait_closed()
    reader, writer = await _open(agent_env.tcp_port)
    with pytest.raises(ConnectionResetError):
        with anyio.fail_after(5):
            await reader.read(100)
    writer.close()


async def _workstation_echo() -> tuple[asyncio.Server, list[bytes]]:
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = b""
        while chunk := await reader.read(65536):
            data += chunk
            writer.write(b"ws:" + chunk)
            await writer.drain()
        seen.append(data)
        writer.write(b"|eof-seen")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, seen


async def test_global_intercept_and_fail_open(agent_env: AgentEnv, echo_server: EchoServer) -> None:
    before_r, before_w = await _open(agent_env.tcp_port)  # opened before the intercept
    server, seen = await _workstation_echo()
    port = server.sockets[0].getsockname()[1]
    info = intercept("all", port=9000, mechanism="tcp")
    agent_env.apply(info)
    client = await agent_env.connect(targets={info.id: LocalTarget("127.0.0.1", port)})

    reader, writer = await _open(agent_env.tcp_port)
    writer.write(b"hello")
    assert await _read_exactly(reader, 8) == b"ws:hello"
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b"|eof-seen"
    writer.close()
    assert seen == [b"hello"]

    before_w.write(b"old")
    assert await _read_exactly(before_r, 3) == b"old"  # still the app
    before_w.close()

    def closed() -> list[TrafficEvent]:
        return [
            m
            for m in client.messages
            if isinstance(m, TrafficEvent) and m.protocol == "tcp" and m.reason != CONNECTION_OPENED
        ]

    await wait_for(lambda: bool(closed()))
    opened = next(m for m in client.messages if isinstance(m, TrafficEvent))
    assert opened.reason == CONNECTION_OPENED and opened.routed == "workstation"
    ev = closed()[0]
    assert ev.routed == "workstation" and ev.intercept == info.id and ev.bytes_in == 5

    # in flight when the tunnel goes: closed cleanly; new traffic goes to the app
    reader, writer = await _open(agent_env.tcp_port)
    writer.write(b"x")
    assert await _read_exactly(reader, 4) == b"ws:x"
    await client.tunnel.aclose()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # EOF, no reset
    writer.close()
    await wait_for(lambda: agent_env.agent.sessions.live(SESSION) is None)
    reader, writer = await _open(agent_env.tcp_port)
    writer.write(b"app?")
    assert await _read_exactly(reader, 4) == b"app?"
    writer.close()
    server.close()


async def test_global_local_refused_resets_client(agent_env: AgentEnv) -> None:
    info = intercept("all", port=9000, mechanism="tcp")
    agent_env.apply(info)
    await agent_env.connect(targets={info.id: LocalTarget("127.0.0.1", 1)})
    reader, writer = await _open(agent_env.tcp_port)
    with pytest.raises(ConnectionResetError):
        with anyio.fail_after(5):
            await reader.read(100)
    writer.close()


async def test_missed_heartbeats_fail_open(agent_env: AgentEnv, echo_server: EchoServer) -> None:
    """A client that stops answering (its read loop frozen) is dropped within the timeout."""
    agent_env.agent.tunnels.ping_interval = 0.1
    agent_env.agent.tunnels.ping_timeout = 0.5
    server, _ = await _workstation_echo()
    info = intercept("all", port=9000, mechanism="tcp")
    agent_env.apply(info)
    client = await agent_env.connect(
        targets={info.id: LocalTarget("127.0.0.1", server.sockets[0].getsockname()[1])},
        ping_interval=0.1,
        ping_timeout=60,
    )
    # freeze the client: it stops reading and pinging, but keeps the socket open
    client.sock.frozen.set()
    await wait_for(lambda: agent_env.agent.sessions.live(SESSION) is None, timeout=5)
    reader, writer = await _open(agent_env.tcp_port)
    writer.write(b"ping")
    assert await _read_exactly(reader, 4) == b"ping"  # the app's echo
    writer.close()
    server.close()


class _UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.put_nowait(data)


async def test_udp_flows(agent_env: AgentEnv) -> None:
    loop = asyncio.get_running_loop()
    t, proto = await loop.create_datagram_endpoint(
        _UdpClient, remote_addr=("127.0.0.1", agent_env.udp_port)
    )
    t.sendto(b"one")
    assert await asyncio.wait_for(proto.got.get(), 5) == b"app:one"

    # workstation UDP echo behind a global UDP intercept
    ws_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ws_sock.bind(("127.0.0.1", 0))
    ws_sock.setblocking(False)

    class _Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.t.sendto(b"ws:" + data, addr)  # type: ignore[attr-defined]

    ws_t, _ = await loop.create_datagram_endpoint(_Echo, sock=ws_sock)
    info = intercept("dns", port=53, mechanism="tcp", protocol="UDP")
    agent_env.apply(info)
    await agent_env.connect(targets={info.id: LocalTarget("127.0.0.1", ws_sock.getsockname()[1])})
    t2, proto2 = await loop.create_datagram_endpoint(
        _UdpClient, remote_addr=("127.0.0.1", agent_env.udp_port)
    )
    for i in range(3):
        t2.sendto(b"q%d" % i)
    got = sorted([await asyncio.wait_for(proto2.got.get(), 5) for _ in range(3)])
    assert got == [b"ws:q0", b"ws:q1", b"ws:q2"]
    t.close()
    t2.close()
    ws_t.close()
