"""One taken-over TCP port: each new connection is dispatched at accept time.

- nothing intercepted (or the owners' tunnels are down): pass-through relay;
- a global intercept whose client is connected: a new tunnel stream;
- personal intercepts with a connected client: the HTTP/1.1 router, or the
  HTTP/2 (prior knowledge) router; other bytes are relayed to the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Coroutine
from typing import Any

from agent.h2c import H2cSession
from agent.http1 import CHUNK, Http1Session, PortContext, serve_raw_to_app
from agent.passthrough import Relay
from agent.relay import Counts, relay_tunnel
from agent.state import PortPlan
from core.protocol import InterceptInfo, TrafficEvent
from core.tunnel import TunnelClosed

log = logging.getLogger(__name__)

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_METHOD = re.compile(rb"[A-Z]{1,20} ")
_PARTIAL_METHOD = re.compile(rb"[A-Z]{0,20}")


def looks_like_http1(first: bytes) -> bool:
    """Could these first bytes start an HTTP/1.x request?"""
    if _METHOD.match(first):
        return not first.startswith(b"PRI * HTTP/2")
    return len(first) <= 20 and _PARTIAL_METHOD.fullmatch(first) is not None


class PortListener:
    def __init__(self, ctx: PortContext, *, host: str, port: int) -> None:
        self.ctx = ctx
        self.host = host
        self.port = port
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.relays: set[Relay] = set()

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None
        sockname = self.server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            self._factory, self.host, self.port, reuse_address=True, backlog=4096
        )

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        for relay in list(self.relays):
            for side in (relay.down, relay.up):
                if side.transport is not None:
                    side.transport.abort()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=2)

    @property
    def connections(self) -> int:
        return len(self.tasks) + len(self.relays)

    # ---------------------------------------------------------- dispatching

    def _factory(self) -> asyncio.Protocol:
        plan: PortPlan = self.ctx.plan()
        sessions = self.ctx.sessions
        if plan.global_ is not None and sessions.live(plan.global_.session_id):
            info = plan.global_
            return self._streams(lambda r, w: self._global(r, w, info))
        if any(sessions.live(rule.session_id) for rule in plan.rules):
            return self._streams(self._http)
        relay = Relay(self.ctx.app_host, self.ctx.app_port, on_done=self._relay_done)
        self.relays.add(relay)
        return relay.protocol()

    def _relay_done(self, relay: Relay) -> None:
        self.relays.discard(relay)
        if self.ctx.sessions.watched:
            self.ctx.sessions.publish(
                TrafficEvent(
                    protocol="tcp",
                    bytes_in=relay.down.bytes,
                    bytes_out=relay.up.bytes,
                    duration_ms=(time.monotonic() - relay.started) * 1000,
                    reason=relay.failed or "no intercept on this port",
                )
            )

    def _streams(
        self,
        handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]],
    ) -> asyncio.Protocol:
        reader = asyncio.StreamReader(limit=CHUNK)

        def connected(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            task = asyncio.get_running_loop().create_task(self._guard(handler(r, w), w))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        return asyncio.StreamReaderProtocol(reader, connected)

    async def _guard(self, work: Coroutine[Any, Any, None], writer: asyncio.StreamWriter) -> None:
        try:
            await work
        except Exception:
            log.exception("connection handler failed")
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _global(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, info: InterceptInfo
    ) -> None:
        started = time.monotonic()
        peer = writer.get_extra_info("peername")
        peer_s = f"{peer[0]}:{peer[1]}" if peer else ""
        ev = TrafficEvent(protocol="tcp", intercept=info.id)
        tunnel = self.ctx.sessions.live(info.session_id)
        counts: Counts
        try:
            if tunnel is None:
                raise TunnelClosed("tunnel gone")
            stream = await tunnel.open_stream(
                kind="tcp", intercept=info.id, peer=peer_s, port=self.ctx.service_port
            )
        except TunnelClosed:
            ev.reason = "the client's tunnel is down: sent to the app (fail-open)"
            counts = await serve_raw_to_app(reader, writer, self.ctx, b"")
        else:
            ev.routed, ev.client = "workstation", info.session_id
            counts = await relay_tunnel(reader, writer, stream)
            if counts.outcome != "closed":
                ev.reason = counts.outcome
        ev.bytes_in, ev.bytes_out = counts.bytes_in, counts.bytes_out
        ev.duration_ms = (time.monotonic() - started) * 1000
        self.ctx.sessions.publish(ev)

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.read(CHUNK)
        except (ConnectionError, OSError):
            return
        if not first:
            return
        while len(first) < len(H2_PREFACE) and H2_PREFACE.startswith(first):
            more = await reader.read(CHUNK)
            if not more:
                return
            first += more
        if first.startswith(H2_PREFACE):
            await H2cSession(reader, writer, self.ctx, first).run()
            return
        if looks_like_http1(first):
            await Http1Session(reader, writer, self.ctx, first).run()
            return
        # Not HTTP: the app gets the bytes untouched.
        started = time.monotonic()
        counts = await serve_raw_to_app(reader, writer, self.ctx, first)
        if self.ctx.sessions.watched:
            self.ctx.sessions.publish(
                TrafficEvent(
                    protocol="tcp",
                    bytes_in=counts.bytes_in,
                    bytes_out=counts.bytes_out,
                    duration_ms=(time.monotonic() - started) * 1000,
                    reason="not HTTP/1.1: relayed to the app unparsed",
                )
            )
