"""One WebSocket peer: typed send (serialised by a lock) and typed receive."""

from __future__ import annotations

import asyncio

import anyio
from aiohttp import WSMsgType, web
from pydantic import BaseModel, ValidationError

from core.protocol import ErrorReply, Message, Problem, dump_message, parse_message


class PeerGone(Exception):
    """The peer closed the connection or sent something that is not a message."""


class Peer:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._lock = asyncio.Lock()

    async def send(self, msg: BaseModel) -> None:
        async with self._lock:
            if not self.ws.closed:
                await self.ws.send_str(dump_message(msg))

    async def receive(self, timeout: float | None = None) -> Message:
        """The next message; ``PeerGone`` on close, ``ValidationError`` on junk."""
        with anyio.fail_after(timeout):
            frame = await self.ws.receive()
        if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            return parse_message(frame.data)
        raise PeerGone(f"connection ended ({frame.type.name})")

    async def refuse(self, code: str, title: str, message: str, hint: str = "") -> None:
        await self.send(
            ErrorReply(error=Problem(code=code, title=title, message=message, hint=hint))
        )
        await self.ws.close()


def bad_frame_problem(e: ValidationError) -> tuple[str, str, str]:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return ("bad-request", "Malformed message", f"{where}: {first['msg']}")
