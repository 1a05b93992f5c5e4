"""Personal intercepts on HTTP/2 cleartext (prior knowledge, e.g. gRPC): per stream.

The agent terminates the client's HTTP/2 connection and matches each request
stream on its headers and ``:path``. Unmatched streams go to the app over one
HTTP/2 connection per client connection; a matched stream gets its own HTTP/2
connection to the workstation, carried by a tunnel stream (``waylay-kind:
h2``). Headers, data, trailers, resets and flow control are relayed per
stream: a stream's bytes are acknowledged to its sender only once they have
been handed to the other side, so a slow reader stalls only its own stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from agent.http1 import PortContext
from agent.rules import match
from core.protocol import TrafficEvent
from core.tunnel import StreamReset, TunnelClosed, TunnelStream

CHUNK = 1 << 16

Header = tuple[str, str]


def _decode(headers: object) -> list[Header]:
    out: list[Header] = []
    for name, value in headers or []:  # type: ignore[attr-defined]
        out.append(
            (
                name.decode() if isinstance(name, bytes) else str(name),
                value.decode() if isinstance(value, bytes) else str(value),
            )
        )
    return out


class Peer:
    """One HTTP/2 connection (sans-IO ``h2``) with its byte transport."""

    def __init__(
        self,
        *,
        client_side: bool,
        write: Callable[[bytes], Awaitable[None]],
        abort: Callable[[], None],
    ) -> None:
        config = h2.config.H2Configuration(client_side=client_side, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.write = write
        self.abort = abort
        self.pipes: dict[int, Pipe] = {}
        """Stream id on this connection -> the pipe that *reads* from it."""
        self.out: dict[int, Pipe] = {}
        """Stream id on this connection -> the pipe that *writes* into it."""
        self.closed = False

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            await self.write(data)


@dataclass
class Pipe:
    """One direction of one relayed stream: src stream -> dst stream."""

    src: Peer
    src_id: int
    dst: Peer
    dst_id: int
    pending: bytearray = field(default_factory=bytearray)
    unacked: int = 0
    ended: bool = False
    trailers: list[Header] | None = None
    done: bool = False
    count: int = 0

    def pump(self) -> None:
        """Move what the destination's windows allow; then end or send trailers."""
        if self.done:
            return
        conn = self.dst.conn
        while self.pending:
            try:
                window = conn.local_flow_control_window(self.dst_id)
            except (h2.exceptions.StreamClosedError, KeyError):
                self.done = True
                return
            size = min(window, conn.max_outbound_frame_size, len(self.pending))
            if size <= 0:
                return
            conn.send_data(self.dst_id, bytes(self.pending[:size]))
            del self.pending[:size]
            self.count += size
            self._ack(size)
        if self.ended:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                if self.trailers is not None:
                    conn.send_headers(self.dst_id, self.trailers, end_stream=True)
                else:
                    conn.end_stream(self.dst_id)
            self.done = True

    def _ack(self, size: int) -> None:
        take = min(size, self.unacked)
        if take:
            self.unacked -= take
            with contextlib.suppress(h2.exceptions.ProtocolError, KeyError):
                self.src.conn.acknowledge_received_data(take, self.src_id)


@dataclass
class _Route:
    down_id: int
    up: Peer
    up_id: int
    event: TrafficEvent
    started: float
    tunnel_stream: TunnelStream | None = None


class H2cSession:
    """One client connection that started with the HTTP/2 preface."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ctx: PortContext,
        first: bytes,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.ctx = ctx
        self.first = first
        self.down = Peer(client_side=False, write=self._write_down, abort=self._abort_down)
        self.app: Peer | None = None
        self.routes: dict[int, _Route] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else ""

    async def _write_down(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def _abort_down(self) -> None:
        self.writer.transport.abort()

    async def run(self) -> None:
        self.down.conn.initiate_connection()
        try:
            await self._feed(self.down, self.first)
            while data := await self.reader.read(CHUNK):
                await self._feed(self.down, data)
        except (ConnectionError, OSError, h2.exceptions.ProtocolError):
            pass
        finally:
            for task in list(self.tasks):
                task.cancel()
            for route in list(self.routes.values()):
                self._finish(route)
            if self.app is not None:
                self.app.closed = True
                self.app.abort()
            with contextlib.suppress(Exception):
                self.writer.close()

    # ------------------------------------------------------------ event flow

    async def _feed(self, peer: Peer, data: bytes) -> None:
        events = peer.conn.receive_data(data)
        for event in events:
            await self._on_event(peer, event)
        for route in list(self.routes.values()):
            self._maybe_done(route.up, route.up_id)
        await self._flush_all()

    async def _flush_all(self) -> None:
        peers = [self.down, *(r.up for r in self.routes.values())]
        if self.app is not None:
            peers.append(self.app)
        seen: set[int] = set()
        for peer in peers:
            if id(peer) not in seen:
                seen.add(id(peer))
                with contextlib.suppress(ConnectionError, OSError, StreamReset, TunnelClosed):
                    await peer.flush()

    async def _on_event(self, peer: Peer, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived) and peer is self.down:
            await self._route(event)
        elif isinstance(
            event, h2.events.ResponseReceived | h2.events.InformationalResponseReceived
        ):
            pipe = peer.pipes.get(event.stream_id)
            if pipe is not None:
                headers = _decode(event.headers)
                route = self.routes.get(pipe.dst_id)
                if route is not None and isinstance(event, h2.events.ResponseReceived):
                    status = dict(headers).get(":status", "0")
                    route.event.status = int(status) if status.isdigit() else None
                ended = getattr(event, "stream_ended", None) is not None
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    pipe.dst.conn.send_headers(pipe.dst_id, headers, end_stream=ended)
                if ended:
                    pipe.done = True
        elif isinstance(event, h2.events.DataReceived):
            pipe = peer.pipes.get(event.stream_id)
            if pipe is None:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    peer.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                return
            pipe.pending += event.data
            pipe.unacked += event.flow_controlled_length
            padding = event.flow_controlled_length - len(event.data)
            if padding:
                pipe._ack(padding)
            if event.stream_ended is not None:
                pipe.ended = True
            pipe.pump()
        elif isinstance(event, h2.events.TrailersReceived):
            pipe = peer.pipes.get(event.stream_id)
            if pipe is not None:
                pipe.trailers = _decode(event.headers)
                pipe.ended = True
                pipe.pump()
        elif isinstance(event, h2.events.StreamEnded):
            pipe = peer.pipes.get(event.stream_id)
            if pipe is not None:
                pipe.ended = True
                pipe.pump()
            self._maybe_done(peer, event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            pipe = peer.pipes.get(event.stream_id)
            if pipe is not None and not pipe.done:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    pipe.dst.conn.reset_stream(pipe.dst_id, event.error_code or 0)
                pipe.done = True
            back = peer.out.get(event.stream_id)
            if back is not None:
                back.done = True
            self._maybe_done(peer, event.stream_id, force=True)
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            for pipe in list(peer.out.values()):
                pipe.pump()
        elif isinstance(event, h2.events.ConnectionTerminated) and peer is self.app:
            self.app = None  # the app wants no new streams here: the next one dials anew

    async def _route(self, event: h2.events.RequestReceived) -> None:
        headers = _decode(event.headers)
        pseudo = dict(h for h in headers if h[0].startswith(":"))
        plain: dict[str, str] = {}
        for name, value in headers:
            if not name.startswith(":"):
                plain[name] = f"{plain[name]}, {value}" if name in plain else value
        path = pseudo.get(":path", "/")
        result = match(self.ctx.plan().rules, path, plain)
        ev = TrafficEvent(
            protocol="h2",
            method=pseudo.get(":method", ""),
            path=path,
            headers=plain,
            intercept=result.rule.id if result.rule else "",
            reason=result.reason,
        )
        up: Peer | None = None
        stream: TunnelStream | None = None
        if result.rule is not None:
            tunnel = self.ctx.sessions.live(result.rule.session_id)
            if tunnel is None:
                ev.reason = "the client's tunnel is down: sent to the app (fail-open)"
            else:
                try:
                    stream = await tunnel.open_stream(
                        kind="h2",
                        intercept=result.rule.id,
                        peer=self.peer,
                        port=self.ctx.service_port,
                    )
                    up = self._tunnel_peer(stream)
                    ev.routed, ev.client, ev.reason = "workstation", result.rule.session_id, ""
                except TunnelClosed:
                    ev.reason = "the client's tunnel closed: sent to the app (fail-open)"
        if up is None:
            try:
                up = await self._app_peer()
            except OSError as exc:
                ev.status, ev.reason = 502, f"app unreachable: {exc}"
                self.down.conn.reset_stream(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                self.ctx.sessions.publish(ev)
                return
        up_id = up.conn.get_next_available_stream_id()
        ended = event.stream_ended is not None
        up.conn.send_headers(up_id, headers, end_stream=ended)
        request = Pipe(self.down, event.stream_id, up, up_id, ended=ended, done=ended)
        response = Pipe(up, up_id, self.down, event.stream_id)
        self.down.pipes[event.stream_id] = request
        up.out[up_id] = request
        up.pipes[up_id] = response
        self.down.out[event.stream_id] = response
        self.routes[event.stream_id] = _Route(
            event.stream_id, up, up_id, ev, time.monotonic(), stream
        )

    def _maybe_done(self, peer: Peer, stream_id: int, *, force: bool = False) -> None:
        down_id = stream_id if peer is self.down else None
        if down_id is None:
            pipe = peer.pipes.get(stream_id)
            down_id = pipe.dst_id if pipe is not None else None
        route = self.routes.get(down_id) if down_id is not None else None
        if route is None:
            return
        request = self.down.pipes.get(route.down_id)
        response = self.down.out.get(route.down_id)
        if force or (
            request is not None and request.done and response is not None and response.done
        ):
            self._finish(route)

    def _finish(self, route: _Route) -> None:
        self.routes.pop(route.down_id, None)
        request = self.down.pipes.pop(route.down_id, None)
        response = self.down.out.pop(route.down_id, None)
        route.up.pipes.pop(route.up_id, None)
        route.up.out.pop(route.up_id, None)
        route.event.bytes_in = request.count if request else 0
        route.event.bytes_out = response.count if response else 0
        route.event.duration_ms = (time.monotonic() - route.started) * 1000
        if route.tunnel_stream is not None:
            route.up.closed = True
            self._spawn(_end_quietly(route.tunnel_stream))
        sessions = self.ctx.sessions
        if route.event.client or route.event.intercept or sessions.watched:
            sessions.publish(route.event)

    # ------------------------------------------------------------- upstreams

    async def _app_peer(self) -> Peer:
        if self.app is not None and not self.app.closed:
            return self.app
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection(self.ctx.app_host, self.ctx.app_port)

        async def write(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        peer = Peer(client_side=True, write=write, abort=writer.transport.abort)
        peer.conn.initiate_connection()
        self.app = peer
        self._spawn(self._read_upstream(peer, reader.read))
        return peer

    def _tunnel_peer(self, stream: TunnelStream) -> Peer:
        peer = Peer(client_side=True, write=stream.send, abort=stream.reset)
        peer.conn.initiate_connection()
        self._spawn(self._read_upstream(peer, lambda _n: stream.receive()))
        return peer

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _read_upstream(self, peer: Peer, read: Callable[[int], Awaitable[bytes]]) -> None:
        try:
            while data := await read(CHUNK):
                await self._feed(peer, data)
        except (ConnectionError, OSError, StreamReset, TunnelClosed, h2.exceptions.ProtocolError):
            pass
        if peer.closed:
            return
        peer.closed = True
        # the upstream went away: its streams end with a reset toward the client
        for up_id, pipe in list(peer.pipes.items()):
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.down.conn.reset_stream(pipe.dst_id, h2.errors.ErrorCodes.CANCEL)
            self._maybe_done(peer, up_id, force=True)
        with contextlib.suppress(ConnectionError, OSError):
            await self.down.flush()
        if peer is self.app:
            self.app = None


async def _end_quietly(stream: TunnelStream) -> None:
    with contextlib.suppress(StreamReset, TunnelClosed):
        await stream.send_eof()
