"""Personal intercepts on HTTP/1.1: route request by request.

Each request head on a client connection is parsed (``agent.http1_parse``),
matched against the port's rules, and the request is relayed byte for byte to
the app (over one kept-alive connection per client connection) or down a new
tunnel stream to the workstation; the response comes back the same way.
Pipelined requests wait in the buffer and are answered in order. Chunked
bodies, ``Expect: 100-continue`` (interim responses are relayed) and
``Upgrade``/``CONNECT`` (the connection is then relayed raw) are handled.
Bad input gets a proxy's answer: 400 (malformed), 431 (head over 64 KiB), 408
(head not complete in time), 502 (upstream unreachable or broken).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.http1_parse import (
    CHUNKED,
    HttpError,
    RequestHead,
    parse_request_head,
    parse_response_head,
)
from agent.passthrough import reset
from agent.relay import Counts, relay_sockets, relay_tunnel
from agent.rules import match
from agent.sessions import Sessions
from agent.source import Source, Truncated
from agent.state import PortPlan
from agent.upstream import AppUpstream, TunnelUpstream, Upstream, UpstreamGone
from core.protocol import TrafficEvent
from core.tunnel import TunnelClosed

CHUNK = 1 << 17
HIGH_WATER = 1 << 20
EARLY_RESPONSE_GRACE = 0.5

_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
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


@dataclass
class _Stats:
    status: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    note: str = ""


def error_response(status: int, detail: str) -> bytes:
    reason = _REASONS.get(status, "Error")
    body = f"{status} {reason}: {detail}\n".encode("utf-8", "replace")
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\nserver: waylay-agent\r\n\r\n"
    )
    return head.encode() + body


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
        self.client = Source(self._read_client, first)
        self.app: AppUpstream | None = None
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else ""
        self.responded = False

    # ------------------------------------------------------------ client I/O

    async def _read_client(self) -> bytes:
        try:
            return await self.reader.read(CHUNK)
        except (ConnectionError, OSError) as exc:
            raise ClientGone(str(exc)) from exc

    async def _write_client(self, data: bytes) -> None:
        self.writer.write(data)
        if self.writer.transport.get_write_buffer_size() > HIGH_WATER:
            try:
                await self.writer.drain()
            except (ConnectionError, OSError) as exc:
                raise ClientGone(str(exc)) from exc

    async def _read_head(self) -> bytes | None:
        """Idle until the next request starts; then its head must arrive in time."""
        if not self.client.buf and not await self.client.fill():
            return None
        if b"\r\n\r\n" in self.client.buf:  # the usual case: the whole head is here
            return await self.client.head()
        try:
            async with asyncio.timeout(self.ctx.head_timeout):
                return await self.client.head()
        except TimeoutError:
            raise _Timeout from None

    # -------------------------------------------------------------- the loop

    async def run(self) -> None:
        try:
            while True:
                head = await self._read_head()
                if head is None:
                    return
                request = parse_request_head(head)
                self.responded = False
                if not await self._exchange(head, request):
                    return
        except _Timeout:
            await self._fail(408, "the request head did not arrive in time")
        except HttpError as exc:
            await self._fail(exc.status, str(exc))
        except (ClientGone, Truncated, ConnectionError, OSError):
            pass
        finally:
            if self.app is not None:
                self.app.close()
            with contextlib.suppress(Exception):
                self.writer.close()

    async def _fail(self, status: int, detail: str) -> None:
        if self.responded:
            return
        self.responded = True
        with contextlib.suppress(Exception):
            self.writer.write(error_response(status, detail))
            await self.writer.drain()

    async def _exchange(self, head: bytes, request: RequestHead) -> bool:
        """One request and its response; True when the connection may carry another."""
        started = time.monotonic()
        sessions = self.ctx.sessions
        rules = self.ctx.plan().http_rules
        result = match(rules, request.target, request.headers)
        intercept = result.rule.id if result.rule is not None else ""
        client = ""
        reason = result.reason
        upstream: Upstream | None = None
        if result.rule is not None:
            tunnel = sessions.live(result.rule.session_id)
            if tunnel is None:
                reason = "the client's tunnel is down: sent to the app (fail-open)"
            else:
                try:
                    stream = await tunnel.open_stream(
                        kind="http", intercept=intercept, peer=self.peer, port=self.ctx.service_port
                    )
                    upstream, client = TunnelUpstream(stream), result.rule.session_id
                except TunnelClosed:
                    reason = "the client's tunnel closed: sent to the app (fail-open)"
        stats = _Stats()
        keep = False
        try:
            if upstream is None:
                upstream = await self._app_upstream()
                try:
                    keep = await self._forward(head, request, upstream, stats)
                except UpstreamGone:
                    if not (upstream.reused and request.body == 0 and stats.status is None):
                        raise
                    # a kept-alive app connection closed under us: one fresh try
                    upstream.close()
                    self.app = None
                    upstream = await self._app_upstream()
                    keep = await self._forward(head, request, upstream, stats)
            else:
                keep = await self._forward(head, request, upstream, stats)
        except (ClientGone, Truncated):
            stats.note = "the client went away in the middle of the request"
            if upstream is not None:
                upstream.abort()
                if upstream is self.app:
                    self.app = None
            raise
        except (UpstreamGone, HttpError) as exc:
            if upstream is not None:
                upstream.abort()
                if upstream is self.app:
                    self.app = None
            stats.status = stats.status or 502
            stats.note = f"upstream failed: {exc}"
            await self._fail(502, stats.note)
            keep = False
        finally:
            if client or intercept or sessions.watched:
                sessions.publish(
                    TrafficEvent(
                        protocol="http",
                        intercept=intercept,
                        client=client,
                        method=request.method,
                        path=request.target,
                        status=stats.status,
                        bytes_in=stats.bytes_in,
                        bytes_out=stats.bytes_out,
                        duration_ms=(time.monotonic() - started) * 1000,
                        routed="workstation" if client else "app",
                        reason=stats.note or ("" if client else reason),
                        headers=dict(request.headers),
                    )
                )
        return keep and request.keep_alive

    async def _app_upstream(self) -> AppUpstream:
        if self.app is not None and not self.app.idle_and_open:
            self.app.close()
            self.app = None
        if self.app is None:
            try:
                self.app = await AppUpstream.connect(self.ctx.app_host, self.ctx.app_port)
            except (OSError, TimeoutError) as exc:
                raise UpstreamGone(
                    f"app unreachable at {self.ctx.app_host}:{self.ctx.app_port}: {exc}"
                )
        self.app.kept = False
        return self.app

    async def _forward(
        self, head: bytes, request: RequestHead, up: Upstream, stats: _Stats
    ) -> bool:
        await up.write(head)
        body_task: asyncio.Task[int] | None = None
        if request.body == CHUNKED or request.body > 0:
            if request.expect_continue or request.body == CHUNKED or request.body > CHUNK:
                body_task = asyncio.get_running_loop().create_task(
                    self.client.body(request.body, up.write)
                )
                body_task.add_done_callback(_retrieve)
            else:
                stats.bytes_in = await self.client.body(request.body, up.write)
        try:
            while True:
                rhead = await up.source.head(status=502)
                if rhead is None:
                    raise UpstreamGone("the upstream closed the connection without responding")
                response = parse_response_head(rhead, request.method)
                if response.status == 101 or (
                    request.method == "CONNECT" and 200 <= response.status < 300
                ):
                    stats.status = response.status
                    self.responded = True
                    await self._write_client(rhead)
                    await self._take_over(up, stats)
                    return False
                await self._write_client(rhead)
                if response.status < 200:
                    continue  # 100 Continue and friends: the final answer follows
                stats.status = response.status
                self.responded = True
                try:
                    stats.bytes_out = await up.source.body(response.body, self._write_client)
                except Truncated as exc:
                    raise ClientGone(f"upstream broke off the response: {exc}") from exc
                break
        except BaseException:
            if body_task is not None:
                body_task.cancel()
            raise
        if body_task is not None:
            done, _ = await asyncio.wait({body_task}, timeout=EARLY_RESPONSE_GRACE)
            if not done:
                body_task.cancel()  # answered before the body was in: cannot go on
                up.abort()
                return False
            try:
                stats.bytes_in = body_task.result()
            except (ClientGone, Truncated):
                up.abort()
                raise
            except UpstreamGone:
                await up.finish(keep=False)
                return False
        keep = response.keep_alive and request.keep_alive
        await up.finish(keep=keep)
        return keep

    async def _take_over(self, up: Upstream, stats: _Stats) -> None:
        """After 101 (or CONNECT 2xx) the connection is raw bytes both ways."""
        first = bytes(self.client.buf)
        back = bytes(up.source.buf)
        counts = Counts()
        if isinstance(up, TunnelUpstream):
            if back:
                self.writer.write(back)
            await relay_tunnel(self.reader, self.writer, up.stream, first=first, counts=counts)
        else:
            assert isinstance(up, AppUpstream)
            self.app = None
            await relay_sockets(
                self.reader,
                self.writer,
                up.reader,
                up.writer,
                first=first,
                first_back=back,
                counts=counts,
            )
        stats.bytes_in += counts.bytes_in
        stats.bytes_out += counts.bytes_out + len(back)


def _retrieve(task: asyncio.Task[int]) -> None:
    """Mark a body task's outcome as seen (it is read, or moot, by its owner)."""
    if not task.cancelled():
        task.exception()


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
