"""``pods/portforward`` over WebSocket, as the kubelet serves it.

Protocol (``v4.channel.k8s.io``; ``v5.channel.k8s.io`` adds a close signal):
port number ``i`` of ``?ports=a,b`` uses data channel ``2i`` and error
channel ``2i+1``. The server first sends a 3-byte frame ``[channel, lo, hi]``
(the port, little-endian) on both channels of every port; after that every
binary frame is ``[channel] + payload``. When nothing listens on a port, the
error channel carries the reason as text, which makes the client close that
local socket. A v5 frame ``[255, channel]`` from the client half-closes that
port's connection.

Each port is dialled at the pod's own address once, when the WebSocket
opens, as the real kubelet does; the WebSocket closes when every port's
connection has ended (or at once when the client goes away).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from sandbox.errors import bad_request

__all__ = ["PROTOCOLS", "parse_ports", "serve_portforward"]

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io")
_CLOSE_CHANNEL = 255
_DIAL_TIMEOUT = 5.0
_CHUNK = 256 * 1024


def parse_ports(values: list[str]) -> list[int]:
    """``["8080,9090", "22"]`` -> ``[8080, 9090, 22]``; 400 on anything else."""
    ports: list[int] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit() or not 0 < int(part) < 65536:
                raise bad_request(f'invalid port "{part}": must be a number from 1 to 65535')
            ports.append(int(part))
    if not ports:
        raise bad_request("at least one port must be given: ?ports=8080")
    return ports


@dataclass
class _Stream:
    index: int
    port: int
    writer: asyncio.StreamWriter | None = None
    pump: asyncio.Task[None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def data_channel(self) -> int:
        return 2 * self.index

    @property
    def error_channel(self) -> int:
        return 2 * self.index + 1


async def serve_portforward(
    request: web.Request, *, pod_ip: str, pod_name: str, pod_uid: str
) -> web.WebSocketResponse:
    """Upgrade ``request`` and forward its ports to ``pod_ip``; returns when all is done."""
    ports = parse_ports(request.query.getall("ports", []))
    ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0, autoping=True)
    await ws.prepare(request)
    v5 = ws.ws_protocol == PROTOCOLS[0]
    streams = [_Stream(index, port) for index, port in enumerate(ports)]
    send_lock = asyncio.Lock()

    async def send(channel: int, payload: bytes) -> None:
        async with send_lock:
            await ws.send_bytes(bytes([channel]) + payload)

    for stream in streams:
        header = stream.port.to_bytes(2, "little")
        await send(stream.data_channel, header)
        await send(stream.error_channel, header)

    async def dial(stream: _Stream) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(pod_ip, stream.port), _DIAL_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            why = "connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc)
            message = (
                f"error forwarding port {stream.port} to pod {pod_name}, uid {pod_uid}: "
                f"failed to connect to localhost:{stream.port}: {why}"
            )
            with contextlib.suppress(ConnectionError, RuntimeError):
                await send(stream.error_channel, message.encode())
            stream.done.set()
            return
        stream.writer = writer
        stream.pump = asyncio.create_task(pump(stream, reader))

    async def pump(stream: _Stream, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(_CHUNK):
                await send(stream.data_channel, data)
        except (OSError, ConnectionError, RuntimeError):
            pass
        finally:
            stream.done.set()

    await asyncio.gather(*(dial(stream) for stream in streams))

    async def all_done() -> None:
        await asyncio.gather(*(stream.done.wait() for stream in streams))
        await ws.close()

    closer = asyncio.create_task(all_done())
    try:
        async for message in ws:
            if message.type != WSMsgType.BINARY or not message.data:
                continue
            data: bytes = message.data
            channel = data[0]
            if v5 and channel == _CLOSE_CHANNEL and len(data) > 1:
                target = data[1] // 2
                if target < len(streams) and streams[target].writer is not None:
                    with contextlib.suppress(OSError):
                        streams[target].writer.write_eof()  # type: ignore[union-attr]
                continue
            index, is_error = divmod(channel, 2)
            if is_error or index >= len(streams):
                continue
            writer = streams[index].writer
            if writer is None or writer.is_closing():
                continue
            writer.write(data[1:])
            with contextlib.suppress(OSError, ConnectionError):
                await writer.drain()
    finally:
        closer.cancel()
        for stream in streams:
            if stream.pump is not None:
                stream.pump.cancel()
            if stream.writer is not None:
                stream.writer.close()
        with contextlib.suppress(Exception):
            await ws.close()
    return ws
