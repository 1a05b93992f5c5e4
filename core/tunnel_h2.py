"""The HTTP/2 multiplexer under the waylay tunnel (both ends).

One :class:`H2Mux` drives one ``h2`` connection over any anyio byte stream (a
TCP socket, a port-forward). It owns the read loop, heartbeats (PING), and
per-stream flow control: received bytes are handed back to the peer
(``WINDOW_UPDATE``) only once the consumer of that stream has taken them, so a
slow consumer stalls its own stream and nothing else. The connection window is
made large at start so it never becomes the bottleneck.

The agent is the HTTP/2 *client* (it opens streams); the workstation is the
HTTP/2 *server* (it accepts them). See ``docs/tunnel.md``.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

STREAM_WINDOW = 1 << 21
"""Per-stream receive window: what one slow consumer may have buffered."""
CONNECTION_WINDOW = (1 << 31) - 1
"""Connection receive window: large, so that only stream windows ever apply."""
MAX_FRAME = 1 << 18
READ_SIZE = 1 << 19
BACKLOG_LIMIT = 1 << 20
"""Queued outgoing bytes above which senders wait for the transport."""


class TunnelClosed(Exception):
    """The tunnel connection is gone (peer closed, heartbeats stopped, protocol error)."""


class StreamReset(Exception):
    """The peer reset this stream (or the tunnel closed under it)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"stream reset by peer (HTTP/2 error code {code})")
        self.code = code


_EOF = b""


def _headers(raw: object) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in raw or []:  # type: ignore[attr-defined]
        key = name.decode() if isinstance(name, bytes) else str(name)
        out[key] = value.decode() if isinstance(value, bytes) else str(value)
    return out


class TunnelStream:
    """One bidirectional byte stream inside the tunnel (one HTTP/2 stream)."""

    def __init__(self, mux: H2Mux, stream_id: int, headers: dict[str, str]) -> None:
        self._mux = mux
        self.stream_id = stream_id
        self.headers = headers
        """Request headers (the agent's metadata for this stream)."""
        self.response_headers: dict[str, str] | None = None
        self._inbox: deque[bytes] = deque()
        self._readable = anyio.Event()
        self._responded = anyio.Event()
        self._eof_received = False
        self._eof_sent = False
        self.reset_code: int | None = None

    # --------------------------------------------------------------- receiving

    async def receive(self) -> bytes:
        """Next chunk; ``b""`` once the peer ended its side; raises StreamReset."""
        while not self._inbox:
            if self.reset_code is not None:
                raise StreamReset(self.reset_code)
            if self._eof_received:
                return _EOF
            self._readable = anyio.Event()
            await self._readable.wait()
        chunk = self._inbox.popleft()
        if chunk:
            await self._mux.acknowledge(self.stream_id, len(chunk))
        return chunk

    async def wait_response(self) -> dict[str, str]:
        """Wait for the peer's response headers (workstation's answer to a stream)."""
        while self.response_headers is None:
            if self.reset_code is not None:
                raise StreamReset(self.reset_code)
            await self._responded.wait()
        return self.response_headers

    # ----------------------------------------------------------------- sending

    async def send(self, data: bytes) -> None:
        """Send bytes, waiting for flow-control credit; raises StreamReset."""
        await self._mux.send_data(self, data)

    async def send_eof(self) -> None:
        """End our side of the stream (TCP half-close)."""
        if self._eof_sent or self.reset_code is not None:
            return
        self._eof_sent = True
        await self._mux.end_stream(self)

    async def respond(self, headers: dict[str, str]) -> None:
        await self._mux.respond(self, headers)

    def reset(self, code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        """Abort the stream (TCP reset); never raises."""
        if self.reset_code is not None:
            return
        self._mux.reset_stream(self, code)

    @property
    def tunnel_closed(self) -> bool:
        """Did this stream end because the whole tunnel went away?"""
        return self._mux.closed

    @property
    def done(self) -> bool:
        return self.reset_code is not None or (self._eof_sent and self._eof_received)

    # ----------------------------------------------------- driven by the mux

    def _on_data(self, data: bytes) -> None:
        self._inbox.append(data)
        self._readable.set()

    def _on_end(self) -> None:
        self._eof_received = True
        self._readable.set()

    def _on_reset(self, code: int) -> None:
        if self.reset_code is None:
            self.reset_code = code
        self._readable.set()
        self._responded.set()

    def _on_response(self, headers: dict[str, str]) -> None:
        self.response_headers = headers
        self._responded.set()


StreamHandler = Callable[[TunnelStream], Awaitable[None]]


class _Connection(h2.connection.H2Connection):
    MAX_CLOSED_STREAMS = 4096
    """h2 remembers this many closed streams (default 65536, ~10 MB on a busy tunnel)."""


class H2Mux:
    """One HTTP/2 connection carrying many :class:`TunnelStream` s."""

    def __init__(
        self,
        transport: anyio.abc.ByteStream,
        *,
        client_side: bool,
        on_stream: StreamHandler | None = None,
        ping_interval: float = 2.0,
        ping_timeout: float = 6.0,
    ) -> None:
        self._transport = transport
        self._client_side = client_side
        self._on_stream = on_stream
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        # Both ends are ours and send a handful of fixed headers: h2's per-header
        # validation and normalisation (a large share of its per-stream cost) is skipped.
        config = h2.config.H2Configuration(
            client_side=client_side,
            header_encoding="utf-8",
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
        self._conn = _Connection(config=config)
        self._streams: dict[int, TunnelStream] = {}
        self._dirty = anyio.Event()
        self._drained = anyio.Event()
        self._writing = False
        self._window_open = anyio.Event()
        self._closed = anyio.Event()
        self.close_reason = ""
        self.last_received = time.monotonic()
        self._tg: anyio.abc.TaskGroup | None = None
        self._head: bytes | None = b"" if client_side else None
        """The first bytes from an HTTP/2 server, until its first frame is checked."""

    # ---------------------------------------------------------------- running

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Drive the connection until it closes; streams are handled in child tasks."""
        self._conn.initiate_connection()
        self._conn.update_settings(
            {
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100_000,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            }
        )
        self._conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._writer)
                self._kick()
                tg.start_soon(self._heartbeat)
                task_status.started()
                try:
                    await self._read_loop()
                finally:
                    tg.cancel_scope.cancel()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            self._shutdown(f"transport failed: {exc}")
        finally:
            self._shutdown(self.close_reason or "tunnel closed")
            with anyio.CancelScope(shield=True):
                with contextlib.suppress(Exception):
                    with anyio.fail_after(1):
                        await self._transport.aclose()

    async def aclose(self) -> None:
        """Say goodbye (GOAWAY) and close the transport."""
        if self.closed:
            return
        with contextlib.suppress(Exception):
            self._conn.close_connection()
            self._kick()
            with anyio.move_on_after(1):
                while self._backlog() or self._writing:
                    await anyio.sleep(0.005)
        self._shutdown("closed locally")
        with contextlib.suppress(Exception):
            with anyio.fail_after(1):
                await self._transport.aclose()

    def _shutdown(self, reason: str) -> None:
        if self._closed.is_set():
            return
        self.close_reason = reason
        self._closed.set()
        for stream in list(self._streams.values()):
            stream._on_reset(h2.errors.ErrorCodes.CANCEL)
        self._streams.clear()
        self._window_open.set()
        self._drained.set()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def _read_loop(self) -> None:
        while True:
            try:
                data = await self._transport.receive(READ_SIZE)
            except (
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                OSError,
            ):
                self._shutdown("peer closed the tunnel")
                return
            self.last_received = time.monotonic()
            if self._head is not None:
                # h2 would wait for a whole (maybe huge) first frame: check the first one
                # is the server's SETTINGS so that a peer speaking something else is
                # refused at once.
                self._head += data
                if len(self._head) >= 9:
                    kind, length, stream = (
                        self._head[3],
                        int.from_bytes(self._head[:3]),
                        self._head[5:9],
                    )
                    if kind != 0x4 or length % 6 or length > 1024 or any(stream):
                        self._shutdown(
                            "the peer does not speak the waylay tunnel protocol (HTTP/2)"
                        )
                        return
                    self._head = None
            try:
                events = self._conn.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                self.close_reason = f"tunnel protocol error: {exc}"
                with contextlib.suppress(Exception), anyio.move_on_after(0.5):
                    data = self._conn.data_to_send()
                    if data and not self._writing:
                        await self._transport.send(data)  # the GOAWAY, best effort
                self._shutdown(self.close_reason)
                return
            for event in events:
                self._dispatch(event)
            self._kick()
            if self.closed:
                return

    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            stream = self._streams.get(event.stream_id)
            if stream is None:
                # Data for a stream we already dropped: hand the credit back at once.
                if event.flow_controlled_length:
                    self._conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                return
            # Padding counts against the window but never reaches the consumer.
            padding = event.flow_controlled_length - len(event.data)
            if padding:
                self._conn.acknowledge_received_data(padding, event.stream_id)
            if event.data:
                stream._on_data(event.data)
            if event.stream_ended is not None:
                stream._on_end()
        elif isinstance(event, h2.events.RequestReceived):
            stream = TunnelStream(self, event.stream_id, _headers(event.headers))
            self._streams[event.stream_id] = stream
            if event.stream_ended is not None:
                stream._on_end()
            if self._on_stream is None or self._tg is None:
                self.reset_stream(stream, h2.errors.ErrorCodes.REFUSED_STREAM)
            else:
                self._tg.start_soon(self._run_handler, stream)
        elif isinstance(event, h2.events.ResponseReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream._on_response(_headers(event.headers))
                if event.stream_ended is not None:
                    stream._on_end()
        elif isinstance(event, h2.events.StreamEnded):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream._on_end()
                self._forget_if_done(stream)
        elif isinstance(event, h2.events.StreamReset):
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None:
                stream._on_reset(int(event.error_code or 0))
            self._window_open.set()
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self._window_open.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._shutdown(f"peer sent GOAWAY ({event.error_code!r})")

    async def _run_handler(self, stream: TunnelStream) -> None:
        assert self._on_stream is not None
        try:
            await self._on_stream(stream)
        finally:
            if not stream.done:
                stream.reset()
            self._streams.pop(stream.stream_id, None)

    def _forget_if_done(self, stream: TunnelStream) -> None:
        if stream.done:
            self._streams.pop(stream.stream_id, None)

    async def _heartbeat(self) -> None:
        counter = 0
        while True:
            await anyio.sleep(self.ping_interval)
            if time.monotonic() - self.last_received > self.ping_timeout:
                self._shutdown(
                    f"no heartbeat from the peer for {self.ping_timeout:.0f}s; "
                    "tunnel considered dead"
                )
                return
            counter += 1
            self._conn.ping(counter.to_bytes(8, "big"))
            self._kick()

    # ---------------------------------------------------------------- sending

    def _kick(self) -> None:
        """Have the writer send what h2 has queued (coalesced per loop iteration)."""
        self._dirty.set()

    def _backlog(self) -> int:
        return len(getattr(self._conn, "_data_to_send", b""))

    async def _writer(self) -> None:
        """The only task that writes to the transport: one send per batch of frames."""
        while True:
            await self._dirty.wait()
            self._dirty = anyio.Event()
            data = self._conn.data_to_send()
            if data:
                self._writing = True
                try:
                    await self._transport.send(data)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                    self._shutdown(f"transport failed: {exc}")
                    return
                finally:
                    self._writing = False
            if self._backlog() < BACKLOG_LIMIT:
                drained, self._drained = self._drained, anyio.Event()
                drained.set()

    def _check_open(self) -> None:
        if self.closed:
            raise TunnelClosed(self.close_reason)

    async def open_stream(self, headers: dict[str, str]) -> TunnelStream:
        """Open a new stream toward the peer (agent side only)."""
        self._check_open()
        stream_id = self._conn.get_next_available_stream_id()
        request = [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", "waylay-tunnel"),
            (":path", headers.pop(":path", "/waylay/v1/stream")),
        ]
        request += [(k.lower(), v) for k, v in headers.items()]
        stream = TunnelStream(self, stream_id, {k: v for k, v in request})
        self._streams[stream_id] = stream
        self._conn.send_headers(stream_id, request)
        await self._flush_or_close()
        return stream

    async def respond(self, stream: TunnelStream, headers: dict[str, str]) -> None:
        self._check_open()
        if stream.reset_code is not None:
            raise StreamReset(stream.reset_code)
        self._conn.send_headers(stream.stream_id, list(headers.items()))
        await self._flush_or_close()

    async def send_data(self, stream: TunnelStream, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if stream.reset_code is not None:
                raise StreamReset(stream.reset_code)
            self._check_open()
            try:
                window = self._conn.local_flow_control_window(stream.stream_id)
            except h2.exceptions.StreamClosedError:
                stream._on_reset(h2.errors.ErrorCodes.STREAM_CLOSED)
                raise StreamReset(h2.errors.ErrorCodes.STREAM_CLOSED)
            size = min(window, self._conn.max_outbound_frame_size, len(view))
            if size <= 0:
                self._window_open = anyio.Event()
                await self._window_open.wait()
                continue
            self._conn.send_data(stream.stream_id, view[:size].tobytes())
            view = view[size:]
            await self._flush_or_close()

    async def end_stream(self, stream: TunnelStream) -> None:
        if self.closed:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._conn.end_stream(stream.stream_id)
        self._forget_if_done(stream)
        await self._flush_or_close()

    def reset_stream(self, stream: TunnelStream, code: int) -> None:
        stream._on_reset(code)
        self._streams.pop(stream.stream_id, None)
        if self.closed:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._conn.reset_stream(stream.stream_id, code)
        self._kick()

    async def acknowledge(self, stream_id: int, size: int) -> None:
        if self.closed:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError, KeyError):
            self._conn.acknowledge_received_data(size, stream_id)
        self._kick()

    async def _flush_or_close(self) -> None:
        """Queue for sending; wait while too much is queued (the transport is slow)."""
        self._check_open()
        self._kick()
        while self._backlog() >= BACKLOG_LIMIT:
            await self._drained.wait()
            self._check_open()
