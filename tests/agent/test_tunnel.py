"""The tunnel (core.tunnel, core.tunnel_h2) between a real agent end and client end.

Covers: handshake carries the session id and watch-all; version skew is
refused on both sides with a clear message; a peer that is not a tunnel is
refused within the handshake timeout; many concurrent streams carry their
bytes intact (hypothesis: any sizes); a stalled consumer on one stream does
not stall another stream; half-close both ways; resets reach the other side;
heartbeats keep an idle tunnel alive and a silent peer is declared dead;
garbage bytes on the wire (hypothesis) end the tunnel cleanly and never
crash; control messages (events) flow agent -> client; finished streams are
forgotten on both ends (no leak).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import anyio
import anyio.abc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.protocol import TrafficEvent
from core.tunnel import (
    AgentTunnel,
    ClientTunnel,
    LocalTarget,
    StreamReset,
    TunnelHandshakeError,
)
from core.tunnel_h2 import STREAM_WINDOW, H2Mux
from tests.agent.conftest import Freezable


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Pair:
    agent: AgentTunnel
    client: ClientTunnel
    sock: Freezable
    local_port: int
    messages: list[object]


async def _local_server(
    tg: anyio.abc.TaskGroup, handler: Callable[[anyio.abc.SocketStream], Awaitable[None]]
) -> int:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    tg.start_soon(listener.serve, handler)
    return int(listener.extra(anyio.abc.SocketAttribute.local_port))


async def _echo(sock: anyio.abc.SocketStream) -> None:
    async with sock:
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            while True:
                await sock.send(await sock.receive())
        with contextlib.suppress(Exception):
            await sock.send(b"<eof>")


@contextlib.asynccontextmanager
async def tunnel_pair(
    handler: Callable[[anyio.abc.SocketStream], Awaitable[None]] = _echo,
    *,
    client_version: str = "1.0",
    ping: tuple[float, float] = (2.0, 6.0),
    client_ping: tuple[float, float] | None = None,
) -> AsyncIterator[Pair]:
    async with anyio.create_task_group() as tg:
        local_port = await _local_server(tg, handler)
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        accepted: list[anyio.abc.SocketStream] = []
        got = anyio.Event()

        async def accept(sock: anyio.abc.SocketStream) -> None:
            accepted.append(sock)
            got.set()
            await anyio.sleep_forever()

        tg.start_soon(listener.serve, accept)
        client_sock = Freezable(await anyio.connect_tcp("127.0.0.1", port))
        await got.wait()
        messages: list[object] = []
        agent = AgentTunnel(accepted[0], pod="pod-1", ping_interval=ping[0], ping_timeout=ping[1])
        client = ClientTunnel(
            client_sock,
            session_id="s1",
            watch_all=True,
            resolve=lambda _i: LocalTarget("127.0.0.1", local_port),
            on_message=messages.append,
            version=client_version,
            ping_interval=(client_ping or ping)[0],
            ping_timeout=(client_ping or ping)[1],
        )
        tg.start_soon(agent.run)
        await tg.start(client.run)
        await _until(lambda: agent.session_id != "")
        yield Pair(agent, client, client_sock, local_port, messages)
        tg.cancel_scope.cancel()


async def _until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not cond():
            await anyio.sleep(0.01)


async def test_handshake_and_events() -> None:
    async with tunnel_pair() as pair:
        assert pair.agent.session_id == "s1" and pair.agent.watch_all
        assert pair.client.pod == "pod-1"
        pair.agent.push(TrafficEvent(method="GET", path="/x"))
        await _until(lambda: bool(pair.messages))
        assert isinstance(pair.messages[0], TrafficEvent) and pair.messages[0].path == "/x"


async def test_version_skew_refused() -> None:
    with pytest.raises(BaseException) as info:
        async with tunnel_pair(client_version="2.0"):
            pass
    text = repr(info.value)
    assert "TunnelHandshakeError" in text and "2.0" in text


async def test_not_a_tunnel_peer_times_out() -> None:
    async with anyio.create_task_group() as tg:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = int(listener.extra(anyio.abc.SocketAttribute.local_port))

        async def silent(sock: anyio.abc.SocketStream) -> None:
            await anyio.sleep(5)

        tg.start_soon(listener.serve, silent)
        sock = await anyio.connect_tcp("127.0.0.1", port)
        client = ClientTunnel(sock, session_id="s", resolve=lambda _i: None, handshake_timeout=0.3)
        with pytest.raises(TunnelHandshakeError):
            await client.run()
        tg.cancel_scope.cancel()


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.integers(min_value=0, max_value=300_000), min_size=1, max_size=6))
def test_many_streams_intact(sizes: list[int]) -> None:
    async def main() -> None:
        async with tunnel_pair() as pair:
            results: dict[int, bytes] = {}

            async def one(i: int, size: int) -> None:
                stream = await pair.agent.open_stream(
                    kind="tcp", intercept="s1:x", peer="p", port=1
                )
                payload = bytes([i % 251]) * size
                got = bytearray()

                async def reader() -> None:
                    while data := await stream.receive():
                        got.extend(data)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(reader)
                    await stream.send(payload)
                    await stream.send_eof()
                results[i] = bytes(got)

            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    for i, size in enumerate(sizes):
                        tg.start_soon(one, i, size)
            for i, size in enumerate(sizes):
                assert results[i] == bytes([i % 251]) * size + b"<eof>"
            # only the control stream (1) is left on either end: no leak
            await _until(
                lambda: set(pair.agent.mux._streams) == set(pair.client.mux._streams) == {1}
            )

    anyio.run(main)


async def test_stalled_stream_does_not_stall_others() -> None:
    release = anyio.Event()

    async def handler(sock: anyio.abc.SocketStream) -> None:
        first = await sock.receive()
        if first.startswith(b"stall"):
            await release.wait()  # never reads: this stream's window fills up
        await sock.send(first)
        await _echo(sock)

    async with tunnel_pair(handler) as pair:
        stalled = await pair.agent.open_stream(kind="tcp", intercept="s1:x", peer="p", port=1)
        await stalled.send(b"stall")

        async def flood() -> None:
            with contextlib.suppress(StreamReset):
                await stalled.send(b"x" * (STREAM_WINDOW * 8))

        async with anyio.create_task_group() as tg:
            tg.start_soon(flood)
            conn = pair.agent.mux._conn
            await _until(lambda: conn.local_flow_control_window(stalled.stream_id) == 0)
            other = await pair.agent.open_stream(kind="tcp", intercept="s1:x", peer="p", port=1)
            with anyio.fail_after(5):
                for _ in range(20):
                    await other.send(b"y" * 100_000)
                    got = 0
                    while got < 100_000:
                        got += len(await other.receive())
            release.set()
            tg.cancel_scope.cancel()


async def test_half_close_and_reset() -> None:
    async def handler(sock: anyio.abc.SocketStream) -> None:
        async with sock:
            data = b""
            with contextlib.suppress(anyio.EndOfStream):
                while True:
                    data += await sock.receive()
            await sock.send(b"got:" + data)  # answers after the peer's EOF

    async with tunnel_pair(handler) as pair:
        stream = await pair.agent.open_stream(kind="tcp", intercept="s1:x", peer="p", port=1)
        await stream.send(b"abc")
        await stream.send_eof()
        out = b""
        with anyio.fail_after(5):
            while data := await stream.receive():
                out += data
        assert out == b"got:abc"

    async def resetter(sock: anyio.abc.SocketStream) -> None:
        await sock.receive()
        raw = sock.extra(anyio.abc.SocketAttribute.raw_socket)
        import socket as _s
        import struct

        raw.setsockopt(_s.SOL_SOCKET, _s.SO_LINGER, struct.pack("ii", 1, 0))
        await sock.aclose()

    async with tunnel_pair(resetter) as pair:
        stream = await pair.agent.open_stream(kind="tcp", intercept="s1:x", peer="p", port=1)
        await stream.send(b"boom")
        with pytest.raises(StreamReset), anyio.fail_after(5):
            while await stream.receive():
                pass


async def test_heartbeats_keep_idle_tunnel_and_detect_silence() -> None:
    # the client's own watchdog is lenient, so only the agent can be the one to
    # declare the (frozen) peer dead
    async with tunnel_pair(ping=(0.1, 1.5), client_ping=(0.1, 60.0)) as pair:
        await anyio.sleep(2.0)  # idle for longer than the timeout: pings keep it alive
        assert not pair.agent.closed and not pair.client.closed
        # freeze the client end (no reads, no pings): the agent declares it dead
        pair.sock.frozen.set()
        await _until(lambda: pair.agent.closed, timeout=3)
        assert "heartbeat" in pair.agent.mux.close_reason


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(min_size=1, max_size=4096))
def test_garbage_on_the_wire_closes_cleanly(garbage: bytes) -> None:
    async def main() -> None:
        left, right = anyio.create_memory_object_stream[bytes](100)
        back_send, _back_recv = anyio.create_memory_object_stream[bytes](100)
        from anyio.streams.stapled import StapledObjectStream

        class _Bytes(anyio.abc.ByteStream):
            def __init__(self) -> None:
                self.inner = StapledObjectStream(back_send, right)

            async def receive(self, max_bytes: int = 65536) -> bytes:
                return await self.inner.receive()

            async def send(self, item: bytes) -> None:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await self.inner.send(item)

            async def send_eof(self) -> None:
                pass

            async def aclose(self) -> None:
                await self.inner.aclose()

        mux = H2Mux(_Bytes(), client_side=False, on_stream=None)
        async with anyio.create_task_group() as tg:
            await tg.start(mux.run)
            await left.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + garbage)
            await left.send(garbage)
            await left.aclose()
            with anyio.fail_after(5):
                await mux.wait_closed()
            tg.cancel_scope.cancel()

    anyio.run(main)
