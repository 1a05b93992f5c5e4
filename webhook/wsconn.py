"""One WebSocket peer: typed send (serialised by a lock) and typed receive.

``accept`` opens a peer and reads its hello, as both WebSocket APIs begin.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

import anyio
from aiohttp import WSMsgType, web
from pydantic import BaseModel, ValidationError

from core.protocol import ErrorReply, Message, Problem, dump_message, parse_message

HelloT = TypeVar("HelloT", bound=BaseModel)


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


BAD_FRAME_HINT = (
    "send JSON messages of waylay's wire protocol (core/protocol.py); if a waylay "
    "client sent this, its version differs from the manager's: upgrade the client, "
    "or run `waylay install` to upgrade the manager"
)


def bad_frame_problem(e: ValidationError) -> Problem:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return Problem(
        code="bad-request",
        title="Malformed message",
        message=f"{where}: {first['msg']}",
        hint=BAD_FRAME_HINT,
    )


async def accept(
    request: web.Request, hello: type[HelloT], timeout: float
) -> tuple[Peer, HelloT | None]:
    """Open the WebSocket of ``request`` and read its first message, a ``hello``.

    Gives the peer and the hello, or ``None`` in its place when the peer sent
    junk or another message first (it is told why) or left or stayed silent
    for ``timeout`` seconds; the socket is then closed. Either way the handler
    answers with ``peer.ws``.
    """
    peer = Peer(web.WebSocketResponse(heartbeat=30.0))
    await peer.ws.prepare(request)
    try:
        first = await peer.receive(timeout)
    except ValidationError as e:
        problem = bad_frame_problem(e)
        await peer.refuse(problem.code, problem.title, problem.message, problem.hint)
        return peer, None
    except (PeerGone, TimeoutError):
        await peer.ws.close()
        return peer, None
    if not isinstance(first, hello):
        expected = hello.model_fields["type"].default
        await peer.refuse("bad-request", f"Expected {expected}", f"got {first.type}")
        return peer, None
    return peer, first
