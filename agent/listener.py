"""One taken-over TCP port: each new connection is dispatched at accept time.

- nothing intercepted (or the owners' tunnels are down): pass-through relay;
- a global intercept whose client is connected: a new tunnel stream;
- personal intercepts with a connected client: the HTTP/1.1 router, or the
  HTTP/2 (prior knowledge) router; other bytes are relayed to the app.

Raw relays live on after the plan changes: when the port gains an intercept
(personal or global) they are armed, and switch to the HTTP router at their
next request boundary (``agent.switch``), so pooled keep-alive connections are
routed too; under a global intercept every request on them goes to its
client. Raw connections that do not speak HTTP/1.x stay with the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

from agent import splice
from agent.h2c import H2cSession
from agent.http1 import CHUNK, Http1Session, PortContext, serve_raw_to_app
from agent.passthrough import Relay
from agent.relay import Counts, relay_tunnel
from agent.sniff import RequestSniffer, SeenRequest
from agent.state import PortPlan
from agent.switch import Verdict, read_verdict, route_http
from core.protocol import InterceptInfo, TrafficEvent
from core.tunnel import TunnelClosed

log = logging.getLogger(__name__)

MAX_MISSES = 3
"""Boundaries at which a raw connection's client sent no request line before it stays raw."""
CONNECTION_OPENED = "connection opened"
"""The reason of the event published when a global intercept's connection is tunneled."""
REQUEST_SEEN = "seen on a raw tunneled connection: response not tracked"
"""The reason of the per-request events of a global intercept's raw connections."""
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_METHOD = re.compile(rb"[A-Z]{1,20} ")
_PARTIAL_METHOD = re.compile(rb"[A-Z]{0,20}")


def looks_like_http1(first: bytes) -> bool:
    """Could these first bytes start an HTTP/1.x request?"""
    if _METHOD.match(first):
        return not first.startswith(b"PRI * HTTP/2")
    return len(first) <= 20 and _PARTIAL_METHOD.fullmatch(first) is not None


class PortListener:
    def __init__(self, ctx: PortContext, *, host: str, port: int, use_splice: bool = True) -> None:
        self.ctx = ctx
        self.host = host
        self.port = port
        self.use_splice = use_splice and splice.AVAILABLE
        self.sock: socket.socket | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.relays: set[Relay] = set()
        self.splices: set[splice.SpliceRelay] = set()
        self.switched = 0
        """Raw connections handed to the HTTP router at a request boundary so far."""

    @property
    def address(self) -> tuple[str, int]:
        assert self.sock is not None
        sockname = self.sock.getsockname()
        return sockname[0], sockname[1]

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(4096)
        sock.setblocking(False)
        self.sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept)

    async def stop(self) -> None:
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        for task in list(self.tasks):
            task.cancel()
        for relay in list(self.relays):
            for side in (relay.down, relay.up):
                if side.transport is not None:
                    side.transport.abort()
        for sp in list(self.splices):
            sp.task.cancel()
            sp.close()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=2)

    @property
    def connections(self) -> int:
        return len(self.tasks) + len(self.relays) + len(self.splices)

    # ---------------------------------------------------------- dispatching

    def _accept(self) -> None:
        assert self.sock is not None
        for _ in range(256):
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: leave the rest in the backlog for now
                log.warning("accept failed on port %d: %s", self.port, exc)
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._dispatch(conn)

    def _dispatch(self, conn: socket.socket) -> None:
        plan: PortPlan = self.ctx.plan()
        sessions = self.ctx.sessions
        loop = asyncio.get_running_loop()
        protocol: asyncio.Protocol
        if plan.global_ is not None and sessions.live(plan.global_.session_id):
            info = plan.global_
            protocol = self._streams(lambda r, w: self._global(r, w, info))
        elif any(sessions.live(rule.session_id) for rule in plan.rules):
            protocol = self._streams(self._http)
        elif self.use_splice:
            self.splices.add(
                splice.SpliceRelay(
                    conn,
                    self.ctx.app_host,
                    self.ctx.app_port,
                    on_done=self._splice_done,
                    armed=self._switch if self._wants_switch(plan) else None,
                )
            )
            return
        else:
            relay = Relay(
                self.ctx.app_host,
                self.ctx.app_port,
                on_done=self._relay_done,
                armed=self._switch_relay if self._wants_switch(plan) else None,
            )
            self.relays.add(relay)
            protocol = relay.protocol()
        task = loop.create_task(loop.connect_accepted_socket(lambda: protocol, conn))
        self._track(task)

    # ----------------------------------------- raw -> HTTP at a request boundary

    @staticmethod
    def _wants_switch(plan: PortPlan) -> bool:
        return plan.global_ is not None or bool(plan.rules)

    def replan(self) -> None:
        """The port's intercepts changed: arm (or disarm) the raw relays."""
        armed = self._switch if self._wants_switch(self.ctx.plan()) else None
        for relay in self.splices:
            relay.armed = armed
        for fallback in self.relays:
            fallback.armed = self._switch_relay if armed is not None else None
        raw = len(self.splices) + len(self.relays)
        if armed is not None and raw:
            log.info(
                "port %d: %d raw connection(s) switch to HTTP routing at their next request",
                self.ctx.service_port,
                raw,
            )

    def _may_switch(self) -> bool | None:
        """None: the port no longer wants switching; False: not now (no live client)."""
        plan = self.ctx.plan()
        if not self._wants_switch(plan):
            return None
        return any(self.ctx.sessions.live(rule.session_id) for rule in plan.http_rules)

    def _switch(self, relay: splice.SpliceRelay) -> bool:
        """A raw relay is at a request boundary: take it over if an intercept's client is live."""
        may = self._may_switch()
        if may is None:
            relay.armed = None
        if not may:
            return False  # nobody to route to yet: stay raw, try again next time
        down, up = relay.detach()
        task = self._decide(down, up, misses=relay.misses)
        self._track(asyncio.get_running_loop().create_task(task))
        return True

    def _switch_relay(self, relay: Relay, data: bytes) -> bool:
        """The same for the fallback relay, which has already read the client's bytes."""
        may = self._may_switch()
        if may is None:
            relay.armed = None
        if not may:
            return False
        down, up = relay.detach()
        task = self._decide(down, up, data, misses=relay.misses)
        self._track(asyncio.get_running_loop().create_task(task))
        return True

    async def _decide(
        self, down: socket.socket, up: socket.socket, first: bytes = b"", *, misses: int = 0
    ) -> None:
        try:
            verdict, first = await read_verdict(down, self.ctx.head_timeout, first)
        except OSError:  # the client reset
            self._reset_pair(down, up)
            return
        except BaseException:  # the agent is stopping
            self._reset_pair(down, up)
            raise
        if verdict is Verdict.HTTP:
            self.switched += 1
            log.debug("port %d: a raw connection switched to HTTP routing", self.ctx.service_port)
            try:
                await route_http(self.ctx, down, up, first)
            except Exception:
                log.exception("switched connection handler failed")
            return
        # Not a request line (e.g. a body after 100 Continue): stay raw, and look
        # again at the next boundary unless this keeps happening or the client closed.
        again = bool(first) and misses + 1 < MAX_MISSES
        if self.use_splice:
            resumed = splice.SpliceRelay(
                down,
                self.ctx.app_host,
                self.ctx.app_port,
                up=up,
                prefix=first,
                on_done=self._splice_done,
                armed=self._switch if again else None,
            )
            resumed.misses = misses + 1
            self.splices.add(resumed)
            return
        relay = Relay(
            self.ctx.app_host,
            self.ctx.app_port,
            on_done=self._relay_done,
            armed=self._switch_relay if again else None,
            up_sock=up,
            prefix=first,
        )
        relay.misses = misses + 1
        self.relays.add(relay)
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(relay.protocol, down)
        except OSError:
            self.relays.discard(relay)
            self._reset_pair(down, up)

    @staticmethod
    def _reset_pair(down: socket.socket, up: socket.socket) -> None:
        for sock in (down, up):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, splice.LINGER_RESET)
            sock.close()

    def _track(self, task: asyncio.Task[Any]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _splice_done(self, relay: splice.SpliceRelay) -> None:
        self.splices.discard(relay)
        self._passthrough_event(relay.bytes_in, relay.bytes_out, relay.started, relay.failed)

    def _relay_done(self, relay: Relay) -> None:
        self.relays.discard(relay)
        self._passthrough_event(relay.down.bytes, relay.up.bytes, relay.started, relay.failed)

    def _passthrough_event(
        self, bytes_in: int, bytes_out: int, started: float, failed: str
    ) -> None:
        if self.ctx.sessions.watched:
            self.ctx.sessions.publish(
                TrafficEvent(
                    protocol="tcp",
                    bytes_in=bytes_in,
                    bytes_out=bytes_out,
                    duration_ms=(time.monotonic() - started) * 1000,
                    reason=failed or "no intercept on this port",
                )
            )

    def _streams(
        self,
        handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]],
    ) -> asyncio.Protocol:
        reader = asyncio.StreamReader(limit=CHUNK)

        def connected(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self._track(asyncio.get_running_loop().create_task(self._guard(handler(r, w), w)))

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
            self.ctx.sessions.publish(ev.model_copy(update={"reason": CONNECTION_OPENED}))
            sniffer = RequestSniffer(lambda seen: self._seen_request(seen, info))
            counts = await relay_tunnel(reader, writer, stream, watch=sniffer.feed)
            if counts.outcome != "closed":
                ev.reason = counts.outcome
            elif sniffer.seen:
                ev.reason = f"connection closed after {sniffer.seen} request(s)"
        ev.bytes_in, ev.bytes_out = counts.bytes_in, counts.bytes_out
        ev.duration_ms = (time.monotonic() - started) * 1000
        self.ctx.sessions.publish(ev)

    def _seen_request(self, seen: SeenRequest, info: InterceptInfo) -> None:
        """A request passed on a raw tunneled connection (see ``agent.sniff``)."""
        self.ctx.sessions.publish(
            TrafficEvent(
                protocol="http",
                intercept=info.id,
                client=info.session_id,
                method=seen.head.method,
                path=seen.head.target,
                bytes_in=seen.bytes_in,
                duration_ms=(time.monotonic() - seen.started) * 1000,
                routed="workstation",
                reason=REQUEST_SEEN,
                headers=dict(seen.head.headers),
            )
        )

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
