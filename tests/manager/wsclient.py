"""A small real-WebSocket client for the manager's APIs (tests only)."""

from __future__ import annotations

from typing import Any

import aiohttp
import anyio
from pydantic import BaseModel

from core.protocol import (
    ClientHello,
    Event,
    Heartbeat,
    Message,
    Request,
    Response,
    dump_message,
    parse_message,
)

TIMEOUT = 10.0


class Conn:
    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session = session
        self.ws = ws
        self.events: list[Event] = []
        self._next = 0

    @classmethod
    async def open(cls, url: str) -> Conn:
        session = aiohttp.ClientSession()
        with anyio.fail_after(TIMEOUT):
            ws = await session.ws_connect(url)
        return cls(session, ws)

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()

    async def send(self, msg: BaseModel) -> None:
        await self.ws.send_str(dump_message(msg))

    async def recv(self, timeout: float = TIMEOUT) -> Message | None:
        """The next message, or None when the server closed."""
        with anyio.fail_after(timeout):
            frame = await self.ws.receive()
        if frame.type != aiohttp.WSMsgType.TEXT:
            return None
        return parse_message(frame.data)

    async def hello(self, **kw: Any) -> Message | None:
        await self.send(ClientHello(client=kw.pop("client", "alice@laptop"), **kw))
        return await self.recv()

    async def call(self, op: str, **params: Any) -> Response:
        self._next += 1
        rid = self._next
        await self.send(Request(id=rid, op=op, params=params))  # type: ignore[arg-type]
        while True:
            msg = await self.recv()
            assert msg is not None, f"connection closed while waiting for {op}"
            if isinstance(msg, Response) and msg.id == rid:
                return msg
            if isinstance(msg, Event):
                self.events.append(msg)

    async def wait_event(self, pred: Any, timeout: float = TIMEOUT) -> Event:
        for e in self.events:
            if pred(e):
                return e
        with anyio.fail_after(timeout):
            while True:
                msg = await self.recv()
                assert msg is not None, "connection closed while waiting for an event"
                if isinstance(msg, Event):
                    self.events.append(msg)
                    if pred(msg):
                        return msg

    async def heartbeat(self) -> None:
        await self.send(Heartbeat())
