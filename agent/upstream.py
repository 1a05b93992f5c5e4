"""Where one HTTP request goes: the app (reused connection) or a tunnel stream."""

from __future__ import annotations

import asyncio
import contextlib

from agent.passthrough import reset
from agent.source import Source
from core.tunnel import StreamReset, TunnelClosed, TunnelStream

CHUNK = 1 << 17
CONNECT_TIMEOUT = 10.0
HIGH_WATER = 1 << 20


class UpstreamGone(Exception):
    """The upstream closed or reset before the exchange was complete."""


class Upstream:
    """A byte connection to the app or the workstation, with a buffered reader."""

    reused = False

    def __init__(self) -> None:
        self.source = Source(self._read)

    async def _read(self) -> bytes:
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    async def finish(self, *, keep: bool) -> None:
        """The exchange is complete: keep for reuse (app) or close gracefully."""
        raise NotImplementedError


class AppUpstream(Upstream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.kept = False
        super().__init__()

    @classmethod
    async def connect(cls, host: str, port: int) -> AppUpstream:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port, limit=CHUNK)
        return cls(reader, writer)

    async def _read(self) -> bytes:
        try:
            return await self.reader.read(CHUNK)
        except (ConnectionError, OSError) as exc:
            raise UpstreamGone(str(exc)) from exc

    async def write(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            if self.writer.transport.get_write_buffer_size() > HIGH_WATER:
                await self.writer.drain()
        except (ConnectionError, OSError, RuntimeError) as exc:
            raise UpstreamGone(str(exc)) from exc

    def abort(self) -> None:
        reset(self.writer.transport)

    @property
    def idle_and_open(self) -> bool:
        """Kept after an exchange, and the app has not closed it since."""
        return (
            self.kept
            and not self.reader.at_eof()
            and not self.writer.is_closing()
            and not self.source.buf
        )

    async def finish(self, *, keep: bool) -> None:
        self.kept = keep
        if keep:
            self.reused = True
        else:
            self.close()

    def close(self) -> None:
        self.kept = False
        with contextlib.suppress(Exception):
            self.writer.close()


class TunnelUpstream(Upstream):
    def __init__(self, stream: TunnelStream) -> None:
        self.stream = stream
        super().__init__()

    async def _read(self) -> bytes:
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

    async def finish(self, *, keep: bool) -> None:
        with contextlib.suppress(StreamReset, TunnelClosed):
            await self.stream.send_eof()
