"""Byte relays between asyncio streams and tunnel streams.

Both keep half-closes (EOF one way only) and turn a reset on one side into a
reset on the other. A tunnel that goes away under a stream (fail-open) closes
the client connection cleanly instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from agent.passthrough import reset
from core.tunnel import StreamReset, TunnelClosed, TunnelStream

CHUNK = 1 << 17


@dataclass
class Counts:
    bytes_in: int = 0
    """Client -> upstream."""
    bytes_out: int = 0
    """Upstream -> client."""
    outcome: str = "closed"


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


async def relay_tunnel(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    stream: TunnelStream,
    *,
    first: bytes = b"",
    counts: Counts | None = None,
    watch: Callable[[bytes], None] | None = None,
) -> Counts:
    """Client connection <-> tunnel stream until both directions have ended.

    ``watch`` sees each chunk the client sends, after it has been sent on."""
    counts = counts or Counts()

    async def up() -> None:
        try:
            if first:
                counts.bytes_in += len(first)
                await stream.send(first)
                if watch is not None:
                    watch(first)
            while data := await reader.read(CHUNK):
                counts.bytes_in += len(data)
                await stream.send(data)
                if watch is not None:
                    watch(data)
            await stream.send_eof()
        except (ConnectionError, OSError):
            counts.outcome = "client reset"
            stream.reset()
            tg.cancel_scope.cancel()
        except (StreamReset, TunnelClosed):
            if stream.tunnel_closed:
                counts.outcome = "tunnel closed"
            else:
                counts.outcome = "workstation reset"
                reset(writer.transport)
            tg.cancel_scope.cancel()

    async def down() -> None:
        try:
            while data := await stream.receive():
                counts.bytes_out += len(data)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            counts.outcome = "client reset"
            stream.reset()
            tg.cancel_scope.cancel()
        except StreamReset:
            if stream.tunnel_closed:
                counts.outcome = "tunnel closed"
            else:
                counts.outcome = "workstation reset"
                reset(writer.transport)
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(up)
        tg.start_soon(down)
    _close(writer)
    return counts


async def relay_sockets(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
    *,
    first: bytes = b"",
    first_back: bytes = b"",
    counts: Counts | None = None,
) -> Counts:
    """Client connection <-> app connection (after an Upgrade, or non-HTTP bytes)."""
    counts = counts or Counts()

    async def pump(
        src: asyncio.StreamReader, dst: asyncio.StreamWriter, prefix: bytes, inbound: bool
    ) -> None:
        n = len(prefix)
        try:
            if prefix:
                dst.write(prefix)
            while data := await src.read(CHUNK):
                n += len(data)
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()
        except (ConnectionError, OSError):
            counts.outcome = "reset"
            reset(dst.transport)
            reset((writer if dst is up_writer else up_writer).transport)
            tg.cancel_scope.cancel()
        finally:
            if inbound:
                counts.bytes_in += n
            else:
                counts.bytes_out += n

    async with anyio.create_task_group() as tg:
        tg.start_soon(pump, reader, up_writer, first, True)
        tg.start_soon(pump, up_reader, writer, first_back, False)
    _close(writer)
    _close(up_writer)
    return counts
