"""A buffered byte source that reads HTTP/1 heads and relays bodies unchanged."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agent.http1_parse import CHUNKED, MAX_HEAD, NO_BODY, UNTIL_CLOSE, ChunkedScanner, HttpError

Sink = Callable[[bytes], Awaitable[None]]


class Truncated(Exception):
    """The peer closed (or reset) before the message was complete."""


class Source:
    def __init__(self, read: Callable[[], Awaitable[bytes]], initial: bytes = b"") -> None:
        self._read = read
        self.buf = bytearray(initial)
        self.eof = False

    async def fill(self) -> bool:
        """Read more; False at EOF."""
        if self.eof:
            return False
        data = await self._read()
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    async def head(self, *, status: int = 400) -> bytes | None:
        """The next message head (ending CRLF CRLF); None at a clean EOF between messages."""
        scanned = 0
        while True:
            while self.buf.startswith(b"\r\n"):  # stray CRLFs between pipelined messages
                del self.buf[:2]
            idx = self.buf.find(b"\r\n\r\n", max(0, scanned - 3))
            if idx >= 0:
                end = idx + 4
                if end > MAX_HEAD:
                    raise HttpError(
                        431 if status == 400 else status, "message head larger than 64 KiB"
                    )
                head = bytes(self.buf[:end])
                del self.buf[:end]
                return head
            if len(self.buf) > MAX_HEAD:
                raise HttpError(431 if status == 400 else status, "message head larger than 64 KiB")
            scanned = len(self.buf)
            if not await self.fill():
                if not self.buf:
                    return None
                raise Truncated("connection closed in the middle of a message head")

    async def body(self, framing: int, sink: Sink) -> int:
        """Relay one body to ``sink``; returns its size in bytes on the wire."""
        if framing == NO_BODY or framing == 0:
            return 0
        if framing == CHUNKED:
            return await self._chunked(sink)
        if framing == UNTIL_CLOSE:
            total = 0
            while True:
                if self.buf:
                    data = bytes(self.buf)
                    self.buf.clear()
                    total += len(data)
                    await sink(data)
                if not await self.fill():
                    return total
        remaining = framing
        while remaining:
            if not self.buf and not await self.fill():
                raise Truncated(f"connection closed with {remaining} body bytes missing")
            take = min(len(self.buf), remaining)
            data = bytes(self.buf[:take])
            del self.buf[:take]
            remaining -= take
            await sink(data)
        return framing

    async def _chunked(self, sink: Sink) -> int:
        scanner = ChunkedScanner()
        total = 0
        while True:
            if self.buf:
                used = scanner.feed(self.buf)
                data = bytes(self.buf[:used])
                del self.buf[:used]
                total += used
                await sink(data)
                if scanner.done:
                    return total
            if not await self.fill():
                raise Truncated("connection closed in the middle of a chunked body")
