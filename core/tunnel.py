"""The waylay tunnel: both ends of the multiplexed connection client <-> agent.

The wire is HTTP/2 (``core.tunnel_h2``): the agent is the HTTP/2 client and
opens one stream per intercepted connection or request; the workstation
accepts those streams and dials the local port. Stream 1 is the control
stream: the workstation answers it with a ``TunnelHello`` line (session id,
version, watch-all); afterwards the agent pushes ``TrafficEvent`` and
``ErrorReply`` lines on it. Heartbeats are HTTP/2 PINGs. The full protocol is
written down in ``docs/tunnel.md``.

Errors::

    TunnelError
     +-- TunnelHandshakeError   (version skew, wrong peer, timeout)
    TunnelClosed / StreamReset  (from core.tunnel_h2)
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import anyio
import anyio.abc
import h2.errors
from pydantic import ValidationError

from core.protocol import (
    PROTOCOL_VERSION,
    ErrorReply,
    Message,
    Problem,
    TunnelHello,
    dump_message,
    major,
    parse_message,
)
from core.tunnel_h2 import H2Mux, StreamReset, TunnelClosed, TunnelStream

__all__ = [
    "AgentTunnel",
    "ClientTunnel",
    "LocalTarget",
    "StreamReset",
    "TunnelClosed",
    "TunnelError",
    "TunnelHandshakeError",
    "TunnelStream",
]

CONTROL_PATH = "/waylay/v1/control"
STREAM_PATH = "/waylay/v1/stream"
HANDSHAKE_TIMEOUT = 10.0
MAX_LINE = 1 << 20
UDP_MAX = 65535


class TunnelError(Exception):
    title = "Tunnel failed"


class TunnelHandshakeError(TunnelError):
    title = "Tunnel handshake failed"


class LineReader:
    """Newline-delimited JSON lines from a tunnel stream."""

    def __init__(self, stream: TunnelStream) -> None:
        self._stream = stream
        self._buf = bytearray()

    async def read_line(self) -> bytes | None:
        while True:
            idx = self._buf.find(b"\n")
            if idx >= 0:
                line = bytes(self._buf[:idx])
                del self._buf[: idx + 1]
                return line
            if len(self._buf) > MAX_LINE:
                raise TunnelError(f"control line longer than {MAX_LINE} bytes")
            chunk = await self._stream.receive()
            if not chunk:
                return None
            self._buf += chunk


def _line(msg: Message | ErrorReply | TunnelHello) -> bytes:
    return dump_message(msg).encode() + b"\n"


# -------------------------------------------------------------------- agent end


class AgentTunnel:
    """The agent's end of one tunnel connection (one client session).

    ``await tg.start(tunnel.run)`` returns once the handshake is done; then
    :attr:`session_id` is known and :meth:`open_stream` may be used. ``run``
    returns when the tunnel closes (peer gone, heartbeats missed, error).
    """

    def __init__(
        self,
        transport: anyio.abc.ByteStream,
        *,
        pod: str,
        ping_interval: float = 2.0,
        ping_timeout: float = 6.0,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        self.pod = pod
        self.mux = H2Mux(
            transport,
            client_side=True,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
        )
        self.handshake_timeout = handshake_timeout
        self.session_id = ""
        self.watch_all = False
        self._control: TunnelStream | None = None
        self._outbox_send, self._outbox_recv = anyio.create_memory_object_stream[bytes](1024)
        self.dropped_events = 0

    @property
    def closed(self) -> bool:
        return self.mux.closed

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[AgentTunnel] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        failure: TunnelError | None = None
        async with anyio.create_task_group() as tg:
            await tg.start(self.mux.run)
            try:
                with anyio.fail_after(self.handshake_timeout):
                    await self._handshake()
            except (TimeoutError, TunnelError, TunnelClosed, StreamReset, ValidationError) as exc:
                failure = (
                    exc
                    if isinstance(exc, TunnelError)
                    else TunnelHandshakeError(
                        f"tunnel handshake failed: {self.mux.close_reason or repr(exc)}"
                    )
                )
                await self.mux.aclose()
                tg.cancel_scope.cancel()
            else:
                tg.start_soon(self._pump_control)
                tg.start_soon(self._drain_control)
                task_status.started(self)
                await self.mux.wait_closed()
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _handshake(self) -> None:
        control = await self.mux.open_stream(
            {":path": CONTROL_PATH, "waylay-version": PROTOCOL_VERSION, "waylay-pod": self.pod}
        )
        self._control = control
        self._reader = LineReader(control)
        await control.wait_response()
        line = await self._reader.read_line()
        if line is None:
            raise TunnelHandshakeError("the client closed the control stream before saying hello")
        msg = parse_message(line)
        if isinstance(msg, ErrorReply):
            raise TunnelHandshakeError(f"{msg.error.title}: {msg.error.message}")
        if not isinstance(msg, TunnelHello):
            raise TunnelHandshakeError(f"expected tunnel-hello, got {msg.type}")
        if major(msg.version) != major(PROTOCOL_VERSION):
            await control.send(_line(_skew(msg.version)))
            raise TunnelHandshakeError(
                f"client speaks tunnel protocol {msg.version}, agent speaks {PROTOCOL_VERSION}"
            )
        self.session_id = msg.session_id
        self.watch_all = msg.watch_all

    async def _pump_control(self) -> None:
        assert self._control is not None
        with contextlib.suppress(TunnelClosed, StreamReset):
            async for line in self._outbox_recv:
                await self._control.send(line)

    async def _drain_control(self) -> None:
        """The client sends nothing after its hello; its closing the stream ends the tunnel."""
        with contextlib.suppress(TunnelClosed, StreamReset, TunnelError):
            while await self._reader.read_line() is not None:
                pass
        await self.mux.aclose()

    def push(self, msg: Message | ErrorReply) -> None:
        """Queue a control message for the client; dropped (and counted) when it lags."""
        try:
            self._outbox_send.send_nowait(_line(msg))
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.dropped_events += 1

    async def open_stream(self, *, kind: str, intercept: str, peer: str, port: int) -> TunnelStream:
        """A new stream to the client for one connection (tcp/http) or UDP flow."""
        return await self.mux.open_stream(
            {
                ":path": STREAM_PATH,
                "waylay-kind": kind,
                "waylay-intercept": intercept,
                "waylay-peer": peer,
                "waylay-port": str(port),
            }
        )

    async def aclose(self) -> None:
        await self.mux.aclose()


def _skew(theirs: str, ours: str = PROTOCOL_VERSION) -> ErrorReply:
    return ErrorReply(
        error=Problem(
            code="version-skew",
            title="Version skew",
            message=f"peer speaks protocol {theirs or '?'}, this side speaks {ours}",
            hint="upgrade waylay on the workstation or re-install the agents",
        )
    )


# ------------------------------------------------------------------- client end


@dataclass(frozen=True)
class LocalTarget:
    host: str
    port: int


Resolver = Callable[[str], LocalTarget | None]
"""Intercept id -> where on the workstation its traffic goes (None: refuse)."""


class ClientTunnel:
    """The workstation's end: accepts the agent's streams and dials the local port."""

    def __init__(
        self,
        transport: anyio.abc.ByteStream,
        *,
        session_id: str,
        resolve: Resolver,
        watch_all: bool = False,
        on_message: Callable[[Message], Awaitable[None] | None] | None = None,
        ping_interval: float = 2.0,
        ping_timeout: float = 6.0,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        dial_timeout: float = 5.0,
        version: str = PROTOCOL_VERSION,
    ) -> None:
        self.session_id = session_id
        self.watch_all = watch_all
        self._resolve = resolve
        self._on_message = on_message
        self.handshake_timeout = handshake_timeout
        self.dial_timeout = dial_timeout
        self.version = version
        self.pod = ""
        self._ready = anyio.Event()
        self._failure: BaseException | None = None
        self.mux = H2Mux(
            transport,
            client_side=False,
            on_stream=self._on_stream,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
        )

    @property
    def closed(self) -> bool:
        return self.mux.closed

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[ClientTunnel] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        failure: BaseException | None = None
        async with anyio.create_task_group() as tg:
            await tg.start(self.mux.run)
            with anyio.move_on_after(self.handshake_timeout):
                while not self._ready.is_set() and self._failure is None and not self.closed:
                    with anyio.move_on_after(0.05):
                        await self._ready.wait()
            if self._failure is not None:
                failure = self._failure
            elif not self._ready.is_set():
                failure = TunnelHandshakeError(
                    f"tunnel closed during handshake: {self.mux.close_reason}"
                    if self.closed
                    else "the agent did not open the control stream in time; "
                    "is this a waylay agent port?"
                )
            if failure is not None:
                await self.mux.aclose()
                tg.cancel_scope.cancel()
            else:
                task_status.started(self)
                await self.mux.wait_closed()
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def aclose(self) -> None:
        await self.mux.aclose()

    async def _on_stream(self, stream: TunnelStream) -> None:
        path = stream.headers.get(":path", "")
        if path == CONTROL_PATH:
            await self._control(stream)
        elif path == STREAM_PATH:
            await self._data(stream)
        else:
            stream.reset(h2.errors.ErrorCodes.REFUSED_STREAM)

    async def _control(self, stream: TunnelStream) -> None:
        theirs = stream.headers.get("waylay-version", "")
        self.pod = stream.headers.get("waylay-pod", "")
        await stream.respond({":status": "200", "waylay-version": self.version})
        if major(theirs) != major(self.version):
            await stream.send(_line(_skew(theirs, self.version)))
            self._failure = TunnelHandshakeError(
                f"agent speaks tunnel protocol {theirs or '?'}, this client speaks {self.version}"
            )
            await stream.send_eof()
            return
        hello = TunnelHello(
            session_id=self.session_id, watch_all=self.watch_all, version=self.version
        )
        await stream.send(_line(hello))
        self._ready.set()
        reader = LineReader(stream)
        with contextlib.suppress(StreamReset, TunnelClosed):
            while (line := await reader.read_line()) is not None:
                try:
                    msg = parse_message(line)
                except ValidationError:
                    continue
                if isinstance(msg, ErrorReply) and msg.error.code == "version-skew":
                    self._failure = TunnelHandshakeError(msg.error.message)
                if self._on_message is not None:
                    result = self._on_message(msg)
                    if result is not None:
                        await result
        await self.mux.aclose()

    async def _data(self, stream: TunnelStream) -> None:
        target = self._resolve(stream.headers.get("waylay-intercept", ""))
        if target is None:
            stream.reset(h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        if stream.headers.get("waylay-kind") == "udp":
            await self._udp(stream, target)
            return
        try:
            with anyio.fail_after(self.dial_timeout):
                local = await dial(target.host, target.port)
        except (OSError, TimeoutError):
            stream.reset(h2.errors.ErrorCodes.CONNECT_ERROR)
            return
        async with local:
            try:
                await stream.respond({":status": "200"})
            except (StreamReset, TunnelClosed):
                return
            await splice(local, stream)

    async def _udp(self, stream: TunnelStream, target: LocalTarget) -> None:
        try:
            sock = await anyio.create_connected_udp_socket(target.host, target.port)
        except OSError:
            stream.reset(h2.errors.ErrorCodes.CONNECT_ERROR)
            return
        async with sock:
            await stream.respond({":status": "200"})
            async with anyio.create_task_group() as tg:

                async def replies() -> None:
                    with contextlib.suppress(StreamReset, TunnelClosed, anyio.ClosedResourceError):
                        async for datagram in sock:
                            await stream.send(frame_datagram(datagram))

                tg.start_soon(replies)
                with contextlib.suppress(StreamReset, TunnelClosed):
                    async for datagram in read_datagrams(stream):
                        await sock.send(datagram)
                tg.cancel_scope.cancel()


# --------------------------------------------------------------------- helpers


async def splice(local: anyio.abc.SocketStream, stream: TunnelStream) -> None:
    """Relay both ways, keeping half-closes; a reset on one side resets the other."""

    async def up() -> None:
        # local -> tunnel
        try:
            while True:
                try:
                    data = await local.receive(1 << 17)
                except anyio.EndOfStream:
                    await stream.send_eof()
                    return
                await stream.send(data)
        except (anyio.BrokenResourceError, OSError):
            stream.reset(h2.errors.ErrorCodes.CONNECT_ERROR)
            tg.cancel_scope.cancel()
        except (StreamReset, TunnelClosed):
            if not stream.tunnel_closed:
                _abort(local)
            tg.cancel_scope.cancel()

    async def down() -> None:
        # tunnel -> local
        try:
            while data := await stream.receive():
                await local.send(data)
            with contextlib.suppress(OSError):
                await local.send_eof()
        except (StreamReset, TunnelClosed):
            if not stream.tunnel_closed:
                _abort(local)
            tg.cancel_scope.cancel()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            stream.reset(h2.errors.ErrorCodes.CONNECT_ERROR)
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(up)
        tg.start_soon(down)


async def dial(host: str, port: int) -> anyio.abc.SocketStream:
    """TCP connect; an IP literal skips anyio's resolver and happy-eyeballs machinery."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return await anyio.connect_tcp(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex((host, port))
        if err == errno.EINPROGRESS:
            await anyio.wait_writable(sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, f"connect to {host}:{port}: {os.strerror(err)}")
        return await anyio.abc.SocketStream.from_socket(sock)
    except BaseException:
        sock.close()
        raise


def _abort(local: anyio.abc.SocketStream) -> None:
    """Make the next close send a TCP RST, like the remote end did."""
    with contextlib.suppress(OSError):
        raw = local.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def frame_datagram(datagram: bytes) -> bytes:
    """UDP datagrams on a stream: 2-byte big-endian length, then the payload."""
    if len(datagram) > UDP_MAX:
        raise ValueError("datagram too large")
    return len(datagram).to_bytes(2, "big") + datagram


async def read_datagrams(stream: TunnelStream) -> AsyncIterator[bytes]:
    buf = bytearray()
    while True:
        while len(buf) >= 2:
            size = int.from_bytes(buf[:2], "big")
            if len(buf) < 2 + size:
                break
            yield bytes(buf[2 : 2 + size])
            del buf[: 2 + size]
        chunk = await stream.receive()
        if not chunk:
            return
        buf += chunk
