"""Personal intercepts on HTTP/1.1: route request by request.

One client connection is parsed with ``h11``; each request is matched against
the port's rules and sent either to the app (over one reused keep-alive
connection per client connection) or down a new tunnel stream to the
workstation. Pipelined requests wait in the parser and are answered in order.
Chunked bodies, trailers, ``Expect: 100-continue`` and ``Upgrade`` (the
connection is then relayed raw) are handled. Bad input gets a proxy's answer:
400 (malformed), 431 (head over 64 KiB), 408 (head not complete in time), 502
(upstream unreachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import h11

from agent.passthrough import reset
from agent.relay import Counts, relay_sockets, relay_tunnel
from agent.rules import match
from agent.sessions import Sessions
from agent.state import PortPlan
from agent.upstream import AppUpstream, TunnelUpstream, Upstream, UpstreamGone
from core.protocol import TrafficEvent
from core.tunnel import TunnelClosed

MAX_HEAD = 64 * 1024
CHUNK = 1 << 17

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    502: b"Bad Gateway",
}


@dataclass
class PortContext:
    plan: Callable[[], PortPlan]
    sessions: Sessions
    app_host: str
    app_port: int
    service_port: int
    head_timeout: float = 10.0


class ClientGone(Exception):
    """The client closed or reset in the middle of a request."""


class _Timeout(Exception):
    pass


def error_response(status: int, detail: str) -> bytes:
    body = f"{status} {_REASONS.get(status, b'Error').decode()}: {detail}\n".encode()
    return (
        f"HTTP/1.1 {status} ".encode()
        + _REASONS.get(status, b"Error")
        + b"\r\ncontent-type: text/plain\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nconnection: close\r\nserver: waylay-agent\r\n\r\n"
        + body
    )


class Http1Session:
    """One client connection on a personal-intercept port."""

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
        self.down = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.down.receive_data(first)
        self.app: AppUpstream | None = None
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else ""
        self.responded = False

    # ------------------------------------------------------------ reading

    async def _next(self, *, head: bool) -> h11.Event | type[h11.PAUSED]:
        """Next parser event; a request head must complete within head_timeout."""
        deadline: float | None = None
        while True:
            event = self.down.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            if head:
                pending = bool(self.down.trailing_data[0]) or self.down.their_state is not h11.IDLE
                if deadline is None and pending:
                    deadline = time.monotonic() + self.ctx.head_timeout
            try:
                if deadline is None:
                    data = await self.reader.read(CHUNK)
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise _Timeout
                    async with asyncio.timeout(remaining):
                        data = await self.reader.read(CHUNK)
            except TimeoutError:
                raise _Timeout from None
            except (ConnectionError, OSError) as exc:
                raise ClientGone(str(exc)) from exc
            if head and deadline is None and data:
                deadline = time.monotonic() + self.ctx.head_timeout
            self.down.receive_data(data)

    async def _send_down(self, event: h11.Event) -> None:
        data = self.down.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        try:
            await self._loop()
        except _Timeout:
            await self._fail(408, "the request head did not arrive in time")
        except h11.RemoteProtocolError as exc:
            await self._fail(exc.error_status_hint, str(exc))
        except (ClientGone, ConnectionError, OSError):
            pass
        finally:
            if self.app is not None:
                self.app.close()
            with contextlib.suppress(Exception):
                self.writer.close()

    async def _fail(self, status: int, detail: str) -> None:
        if self.responded or self.down.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        with contextlib.suppress(Exception):
            self.writer.write(error_response(status, detail))
            await self.writer.drain()

    async def _loop(self) -> None:
        while True:
            event = await self._next(head=True)
            if isinstance(event, h11.ConnectionClosed):
                return
            if not isinstance(event, h11.Request):
                return
            self.responded = False
            switched = await self._exchange(event)
            if (
                switched
                or self.down.our_state is not h11.DONE
                or self.down.their_state is not h11.DONE
            ):
                return
            self.down.start_next_cycle()

    async def _exchange(self, request: h11.Request) -> bool:
        """One request/response; True when the connection was taken over (Upgrade)."""
        started = time.monotonic()
        headers: dict[str, str] = {}
        for name, value in request.headers:
            key = name.decode("latin-1")
            val = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {val}" if key in headers else val
        target = request.target.decode("latin-1")
        method = request.method.decode("latin-1")
        result = match(self.ctx.plan().rules, target, headers)
        ev = TrafficEvent(protocol="http", method=method, path=target, headers=dict(headers))
        upstream: Upstream | None = None
        if result.rule is not None:
            ev.intercept = result.rule.id
            tunnel = self.ctx.sessions.live(result.rule.session_id)
            if tunnel is None:
                ev.reason = "the client's tunnel is down: sent to the app (fail-open)"
            else:
                try:
                    stream = await tunnel.open_stream(
                        kind="http",
                        intercept=result.rule.id,
                        peer=self.peer,
                        port=self.ctx.service_port,
                    )
                    upstream = TunnelUpstream(stream)
                    ev.routed, ev.client = "workstation", result.rule.session_id
                except TunnelClosed:
                    ev.reason = "the client's tunnel closed: sent to the app (fail-open)"
        else:
            ev.reason = result.reason
        try:
            if upstream is None:
                upstream = await self._app_upstream()
            switched = await self._forward(request, upstream, ev)
        except UpstreamGone as exc:
            ev.status = 502
            await self._fail(502, f"upstream failed: {exc}")
            if upstream is not None:
                upstream.abort()
            switched = True  # the connection's state is unusable: end it
        finally:
            ev.duration_ms = (time.monotonic() - started) * 1000
            self.ctx.sessions.publish(ev)
        return switched

    async def _app_upstream(self) -> AppUpstream:
        if self.app is not None and not (self.app.alive and self.app.h11.our_state is h11.IDLE):
            self.app.close()
            self.app = None
        if self.app is None:
            try:
                self.app = await AppUpstream.connect(self.ctx.app_host, self.ctx.app_port)
            except (OSError, TimeoutError) as exc:
                raise UpstreamGone(
                    f"app unreachable at {self.ctx.app_host}:{self.ctx.app_port}: {exc}"
                )
        return self.app

    async def _forward(self, request: h11.Request, up: Upstream, ev: TrafficEvent) -> bool:
        head = up.h11.send(
            h11.Request(
                method=request.method,
                target=request.target,
                headers=list(request.headers.raw_items()),
            )
        )
        await up.write(head or b"")
        body_done = anyio.Event()
        result: dict[str, bool] = {"switched": False}

        async def body() -> None:
            try:
                while True:
                    if self.down.their_state is not h11.SEND_BODY:
                        return
                    event = await self._next(head=False)
                    if isinstance(event, h11.Data):
                        ev.bytes_in += len(event.data)
                        with contextlib.suppress(UpstreamGone, h11.LocalProtocolError):
                            if up.h11.our_state is h11.SEND_BODY:
                                await up.write(up.h11.send(event) or b"")
                    elif isinstance(event, h11.EndOfMessage):
                        with contextlib.suppress(UpstreamGone, h11.LocalProtocolError):
                            if up.h11.our_state is h11.SEND_BODY:
                                await up.write(up.h11.send(event) or b"")
                        return
                    else:
                        return
            except (ClientGone, h11.RemoteProtocolError, _Timeout):
                ev.reason = ev.reason or "the client went away in the middle of the body"
                up.abort()
                tg.cancel_scope.cancel()
                raise ClientGone("client went away mid-body") from None
            finally:
                body_done.set()

        async def response() -> None:
            got_any = False
            while True:
                event = up.h11.next_event()
                if event is h11.NEED_DATA:
                    data = await up.read()
                    if not data and not got_any and self.down.our_state is h11.SEND_RESPONSE:
                        up.h11.receive_data(data)
                        raise UpstreamGone("connection closed before a response")
                    up.h11.receive_data(data)
                    continue
                got_any = True
                if isinstance(event, h11.InformationalResponse):
                    if event.status_code == 101:
                        ev.status = 101
                        self.responded = True
                        await self._send_down(event)
                        result["switched"] = True
                        return
                    with contextlib.suppress(h11.LocalProtocolError):
                        await self._send_down(event)
                elif isinstance(event, h11.Response):
                    ev.status = event.status_code
                    self.responded = True
                    await self._send_down(
                        h11.Response(
                            status_code=event.status_code,
                            headers=list(event.headers.raw_items()),
                            reason=event.reason,
                        )
                    )
                    if request.method == b"CONNECT" and 200 <= event.status_code < 300:
                        result["switched"] = True
                        return
                elif isinstance(event, h11.Data):
                    ev.bytes_out += len(event.data)
                    await self._send_down(event)
                elif isinstance(event, h11.EndOfMessage):
                    await self._send_down(event)
                    return
                else:
                    raise UpstreamGone("connection closed in the middle of the response")

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(body)
                tg.start_soon(response)
        except ExceptionGroup as group:
            raise group.exceptions[0] from None
        if result["switched"]:
            await self._take_over(up, ev)
            return True
        if self.down.their_state is not h11.DONE:
            # The response ended before the request body did: the connection cannot go on.
            up.abort()
            return True
        await up.finish()
        return False

    async def _take_over(self, up: Upstream, ev: TrafficEvent) -> None:
        """After 101 (or CONNECT 2xx) the connection is raw bytes both ways."""
        first = bytes(self.down.trailing_data[0])
        back = bytes(up.h11.trailing_data[0])
        counts = Counts()
        if isinstance(up, TunnelUpstream):
            if back:
                self.writer.write(back)
            await relay_tunnel(self.reader, self.writer, up.stream, first=first, counts=counts)
        else:
            assert isinstance(up, AppUpstream)
            await relay_sockets(
                self.reader,
                self.writer,
                up.reader,
                up.writer,
                first=first,
                first_back=back,
                counts=counts,
            )
            if up is self.app:
                self.app = None
        ev.bytes_in += counts.bytes_in
        ev.bytes_out += counts.bytes_out + len(back)


async def serve_raw_to_app(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: PortContext, first: bytes
) -> Counts:
    """Non-HTTP bytes on an HTTP port: relay to the app untouched."""
    try:
        async with asyncio.timeout(10):
            up_reader, up_writer = await asyncio.open_connection(ctx.app_host, ctx.app_port)
    except (OSError, TimeoutError):
        reset(writer.transport)
        return Counts(outcome="app unreachable")
    return await relay_sockets(reader, writer, up_reader, up_writer, first=first)
