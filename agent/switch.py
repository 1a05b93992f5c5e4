"""Switching a raw pass-through connection to per-request HTTP routing.

A connection accepted while nothing was intercepted on its port is relayed raw
(``agent.splice``). When the port gains a personal intercept, the relay is
armed; at its next request boundary (the app has answered since the client
last spoke, nothing is buffered either way, the app has nothing pending, and
the client sends again) it hands both sockets here. The client's next bytes
are read:

- a complete HTTP/1.x request line: the connection goes to the HTTP router
  (:class:`agent.http1.Http1Session`) from that request on, keeping the open
  app connection for unmatched requests. It stays in HTTP mode for good, even
  when the intercept is removed later;
- anything else (or a client that half-closes, or stalls mid request line):
  the bytes are sent on to the app and the raw relay resumes, unarmed.

Nothing is lost or reordered: the bytes read while deciding are either the
head of the first routed request or the first bytes the raw relay sends on.
"""

from __future__ import annotations

import asyncio
import re
import socket
from enum import Enum

from agent.http1 import CHUNK, Http1Session, PortContext
from agent.upstream import AppUpstream

REQUEST_LINE = re.compile(rb"[A-Z]{1,20} [\x21-\x7e]+ HTTP/1\.[01]\r?\n")
MAX_REQUEST_LINE = 8192
_PREFIX = re.compile(rb"[A-Z]{0,20}( [\x21-\x7e]*( (H(T(T(P(/(1(\.([01]\r?)?)?)?)?)?)?)?)?)?)?")
"""What a request line can look like before its end has arrived."""


class Verdict(Enum):
    HTTP = "http"
    RAW = "raw"
    MORE = "more"


def classify(data: bytes) -> Verdict:
    """Is ``data`` the start of an HTTP/1.x request (a whole request line), not one, or unclear?"""
    if REQUEST_LINE.match(data):
        return Verdict.HTTP
    if len(data) < MAX_REQUEST_LINE and _PREFIX.fullmatch(data):
        return Verdict.MORE
    return Verdict.RAW


async def read_verdict(
    sock: socket.socket, timeout: float, data: bytes = b""
) -> tuple[Verdict, bytes]:
    """Read the client's next bytes (after ``data``) until they decide; EOF or a stall
    means raw."""
    loop = asyncio.get_running_loop()
    if data and (verdict := classify(data)) is not Verdict.MORE:
        return verdict, data
    try:
        async with asyncio.timeout(timeout):
            while True:
                more = await loop.sock_recv(sock, CHUNK)
                if not more:
                    return Verdict.RAW, data
                data += more
                verdict = classify(data)
                if verdict is not Verdict.MORE:
                    return verdict, data
    except TimeoutError:
        return Verdict.RAW, data


_Streams = tuple[
    asyncio.StreamReader, asyncio.StreamWriter, asyncio.StreamReader, asyncio.StreamWriter
]


async def _streams(down: socket.socket, up: socket.socket) -> _Streams | None:
    """asyncio streams over the client socket and the app socket (None: one is gone)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=CHUNK)
    protocol = asyncio.StreamReaderProtocol(reader)
    try:
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, down)
    except OSError:
        down.close()
        up.close()
        return None
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    try:
        up_reader, up_writer = await asyncio.open_connection(sock=up, limit=CHUNK)
    except OSError:
        up.close()
        writer.close()
        return None
    return reader, writer, up_reader, up_writer


async def route_http(
    ctx: PortContext, down: socket.socket, up: socket.socket, first: bytes
) -> None:
    """Run the HTTP router on a switched connection, reusing its app connection."""
    streams = await _streams(down, up)
    if streams is None:
        return
    reader, writer, up_reader, up_writer = streams
    app = AppUpstream(up_reader, up_writer)
    app.kept = True
    app.reused = True
    session = Http1Session(reader, writer, ctx, first)
    session.app = app
    await session.run()
