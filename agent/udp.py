"""A taken-over UDP port: datagrams are carried per source flow.

Each new source address starts a flow: to the app (a connected UDP socket,
replies go back to the source) or, under a global UDP intercept with a
connected client, down one tunnel stream (length-prefixed datagrams). Flows
idle for ``FLOW_IDLE`` seconds are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from typing import Any, cast

import anyio

from agent.http1 import PortContext
from core.protocol import TrafficEvent
from core.tunnel import (
    AgentTunnel,
    StreamReset,
    TunnelClosed,
    TunnelStream,
    frame_datagram,
    read_datagrams,
)

FLOW_IDLE = 60.0
QUEUE = 256

Address = tuple[Any, ...]


class _AppFlow(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpListener, source: Address) -> None:
        self.owner = owner
        self.source = source
        self.transport: asyncio.DatagramTransport | None = None
        self.queue: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        for data in self.queue:
            self.transport.sendto(data)
        self.queue.clear()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.owner.reply(self.source, data)

    def send(self, data: bytes) -> None:
        if self.transport is None:
            if len(self.queue) < QUEUE:
                self.queue.append(data)
        else:
            self.transport.sendto(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _TunnelFlow:
    def __init__(
        self, owner: UdpListener, source: Address, tunnel: AgentTunnel, intercept: str
    ) -> None:
        self.owner = owner
        self.source = source
        self.tunnel = tunnel
        self.intercept = intercept
        self.send_q, self.recv_q = anyio.create_memory_object_stream[bytes](QUEUE)
        self.task = asyncio.get_running_loop().create_task(self._run())
        self.bytes_in = self.bytes_out = 0
        self.started = time.monotonic()

    def send(self, data: bytes) -> None:
        with contextlib.suppress(
            anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError
        ):
            self.send_q.send_nowait(data)

    async def _run(self) -> None:
        stream: TunnelStream | None = None
        try:
            stream = await self.tunnel.open_stream(
                kind="udp",
                intercept=self.intercept,
                peer=f"{self.source[0]}:{self.source[1]}",
                port=self.owner.ctx.service_port,
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._replies, stream)
                async for data in self.recv_q:
                    self.bytes_in += len(data)
                    await stream.send(frame_datagram(data))
        except (StreamReset, TunnelClosed):
            pass
        finally:
            if stream is not None:
                stream.reset()
            self.owner.flows.pop(self.source, None)
            self.owner.ctx.sessions.publish(
                TrafficEvent(
                    protocol="udp",
                    intercept=self.intercept,
                    client=self.tunnel.session_id,
                    routed="workstation",
                    bytes_in=self.bytes_in,
                    bytes_out=self.bytes_out,
                    duration_ms=(time.monotonic() - self.started) * 1000,
                )
            )

    async def _replies(self, stream: TunnelStream) -> None:
        async for data in read_datagrams(stream):
            self.bytes_out += len(data)
            self.owner.reply(self.source, data)

    def close(self) -> None:
        self.task.cancel()


class UdpListener(asyncio.DatagramProtocol):
    def __init__(self, ctx: PortContext, *, host: str, port: int) -> None:
        self.ctx = ctx
        self.host = host
        self.port = port
        self.transport: asyncio.DatagramTransport | None = None
        self.flows: dict[Address, _AppFlow | _TunnelFlow] = {}
        self.seen: dict[Address, float] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[Any]] = set()

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        name = self.transport.get_extra_info("sockname")
        return name[0], name[1]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, self.port))
        self._sweeper = loop.create_task(self._sweep())

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for flow in list(self.flows.values()):
            flow.close()
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def reply(self, source: Address, data: bytes) -> None:
        if self.transport is not None:
            self.transport.sendto(data, source)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.seen[addr] = time.monotonic()
        flow = self.flows.get(addr)
        if flow is None:
            flow = self._new_flow(addr)
            self.flows[addr] = flow
        flow.send(data)

    def _new_flow(self, source: Address) -> _AppFlow | _TunnelFlow:
        plan = self.ctx.plan()
        if plan.global_ is not None:
            tunnel = self.ctx.sessions.live(plan.global_.session_id)
            if tunnel is not None:
                return _TunnelFlow(self, source, tunnel, plan.global_.id)
        flow = _AppFlow(self, source)
        loop = asyncio.get_running_loop()
        task = loop.create_task(
            loop.create_datagram_endpoint(
                lambda: flow, remote_addr=(self.ctx.app_host, self.ctx.app_port)
            )
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        task.add_done_callback(functools.partial(self._dialled, source))
        return flow

    def _dialled(self, source: Address, task: asyncio.Task[Any]) -> None:
        """A flow whose app socket could not be made is forgotten (the next datagram retries)."""
        if task.cancelled() or task.exception() is not None:
            self.flows.pop(source, None)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(FLOW_IDLE / 4)
            now = time.monotonic()
            for addr, last in list(self.seen.items()):
                if now - last > FLOW_IDLE:
                    self.seen.pop(addr, None)
                    flow = self.flows.pop(addr, None)
                    if flow is not None:
                        flow.close()
