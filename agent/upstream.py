"""Where one HTTP request goes: the app (reused connection) or a tunnel stream."""

from __future__ import annotations

import asyncio
import contextlib

import h11

from agent.passthrough import reset
from core.tunnel import StreamReset, TunnelClosed, TunnelStream

CHUNK = 1 << 17
CONNECT_TIMEOUT = 10.0


class UpstreamGone(Exception):
    """The upstream closed or reset before the exchange was complete."""


class Upstream:
    """An HTTP/1.1 client connection to the app or the workstation."""

    reused = False

    def __init__(self) -> None:
        self.h11 = h11.Connection(h11.CLIENT)

    async def read(self) -> bytes:
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    async def finish(self) -> None:
        """The exchange is complete: keep for reuse, or close gracefully."""
        raise NotImplementedError

    @property
    def reusable(self) -> bool:
        return False


class AppUpstream(Upstream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__()
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int) -> AppUpstream:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port, limit=CHUNK)
        return cls(reader, writer)

    async def read(self) -> bytes:
        try:
            return await self.reader.read(CHUNK)
        except (ConnectionError, OSError) as exc:
            raise UpstreamGone(str(exc)) from exc

    async def write(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            raise UpstreamGone(str(exc)) from exc

    def abort(self) -> None:
        reset(self.writer.transport)

    @property
    def alive(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    @property
    def reusable(self) -> bool:
        return self.alive and self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    async def finish(self) -> None:
        if self.reusable:
            self.h11.start_next_cycle()
            self.reused = True
        else:
            self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class TunnelUpstream(Upstream):
    def __init__(self, stream: TunnelStream) -> None:
        super().__init__()
        self.stream = stream

    async def read(self) -> bytes:
        try:
            return await self.stream.receive()
        except (StreamReset, TunnelClosed) as exc:
            raise UpstreamGone(str(exc)) from exc

    async def write(self, data: bytes) -> None:
        try:
            await self.stream.send(data)
        except (StreamReset, TunnelClosed) as exc:
            raise UpstreamGone(str(exc)) from exc

    def abort(self) -> None:
        self.stream.reset()

    async def finish(self) -> None:
        with contextlib.suppress(StreamReset, TunnelClosed):
            await self.stream.send_eof()
