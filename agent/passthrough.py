"""Pass-through: relay a TCP connection to the app without looking at it.

The fallback where ``splice(2)`` is missing (see ``agent.splice``), and home
of :func:`reset`. Built on asyncio protocols (no per-chunk task switches, no parsing): bytes
read from one side are written to the other in the same callback, and a full
write buffer on one side pauses reading on the other. Half-closes are passed
on (``write_eof``), a reset on one side resets the other (``SO_LINGER`` 0), and
an idle connection stays idle forever, as with a direct connection.

Like ``agent.splice``'s relay, one can be *armed* to hand its connection over
at a request boundary (the client speaks again after the app answered, nothing
is buffered either way); here the client's first bytes have already been read
and go along with the two sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable

HIGH_WATER = 1 << 20
LINGER_RESET = struct.pack("ii", 1, 0)
CONNECT_TIMEOUT = 10.0


def reset(transport: asyncio.BaseTransport | None) -> None:
    """Close with a TCP RST (what a peer sees when the other end was reset)."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
    if isinstance(transport, asyncio.Transport):
        transport.abort()
    else:
        transport.close()


class _Side(asyncio.Protocol):
    def __init__(self, relay: Relay, name: str) -> None:
        self.relay = relay
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.eof_in = False
        self.eof_out = False
        self.bytes = 0

    @property
    def other(self) -> _Side:
        return self.relay.up if self is self.relay.down else self.relay.down

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.relay.side_made(self)

    def data_received(self, data: bytes) -> None:
        relay = self.relay
        if self is relay.down:
            if relay.armed is not None and relay.turn_client and relay.offer(data):
                return
            relay.turn_client = False
        else:
            relay.turn_client = True
        self.bytes += len(data)
        peer = self.other.transport
        if peer is not None and not peer.is_closing():
            peer.write(data)
        else:
            self.relay.pending.append(data)

    def eof_received(self) -> bool:
        self.eof_in = True
        peer = self.other
        if peer.transport is not None and not peer.transport.is_closing():
            if not peer.eof_out:
                peer.eof_out = True
                with contextlib.suppress(OSError, RuntimeError):
                    peer.transport.write_eof()
            peer.maybe_close()
        elif peer.transport is None:
            self.relay.pending_eof = True
        self.maybe_close()
        return True

    def maybe_close(self) -> None:
        if self.eof_in and self.eof_out and self.transport is not None:
            self.transport.close()

    def pause_writing(self) -> None:
        t = self.other.transport
        if t is not None and not t.is_closing():
            t.pause_reading()

    def resume_writing(self) -> None:
        t = self.other.transport
        if t is not None and not t.is_closing():
            t.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.relay.detached:
            self.relay.finish()
            return
        self.relay.side_lost(self, exc)


class Relay:
    """One relayed connection: ``down`` is the client, ``up`` is the app."""

    def __init__(
        self,
        app_host: str,
        app_port: int,
        *,
        on_done: Callable[[Relay], None] | None = None,
        armed: Callable[[Relay, bytes], bool] | None = None,
        up_sock: socket.socket | None = None,
        prefix: bytes = b"",
    ) -> None:
        """Dial the app, or (``up_sock``) carry on over an app connection already open,
        first sending it ``prefix`` (client bytes read while deciding a switch)."""
        self.app = (app_host, app_port)
        self.armed = armed
        """Called at a request boundary with the client's bytes; True when it took over."""
        self.turn_client = True
        self.misses = 0
        """Boundaries at which the client did not send a request line (see ``armed``)."""
        self.detached = False
        self._up_sock = up_sock
        self.down = _Side(self, "down")
        self.up = _Side(self, "up")
        self.pending: list[bytes] = [prefix] if prefix else []
        self.pending_eof = False
        self.started = time.monotonic()
        self.peer = ""
        self.failed = ""
        self._on_done = on_done
        self._lost = 0

    def protocol(self) -> asyncio.Protocol:
        return self.down

    def side_made(self, side: _Side) -> None:
        assert side.transport is not None
        side.transport.set_write_buffer_limits(high=HIGH_WATER)
        if side is self.down:
            peer = side.transport.get_extra_info("peername")
            self.peer = f"{peer[0]}:{peer[1]}" if peer else ""
            side.transport.pause_reading()
            asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                if self._up_sock is not None:
                    await loop.create_connection(lambda: self.up, sock=self._up_sock)
                else:
                    await loop.create_connection(lambda: self.up, *self.app)
        except (OSError, TimeoutError) as exc:
            self.failed = f"app unreachable: {exc}"
            reset(self.down.transport)
            self._finish()
            return
        down = self.down.transport
        up = self.up.transport
        assert up is not None
        with contextlib.suppress(OSError):
            up.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if down is None or down.is_closing():
            up.close()
            return
        for data in self.pending:
            up.write(data)
        self.pending.clear()
        down.resume_reading()

    def side_lost(self, side: _Side, exc: Exception | None) -> None:
        other = side.other
        if other.transport is not None and not other.transport.is_closing():
            if exc is not None:
                reset(other.transport)
            elif other.eof_in and not other.eof_out:
                other.transport.close()
            else:
                other.transport.close()
        self._lost += 1
        if self._lost == 2 or (side is self.down and self.up.transport is None):
            self._finish()

    def offer(self, data: bytes) -> bool:
        """At a request boundary, let ``armed`` take the connection (and ``data``)."""
        down, up = self.down.transport, self.up.transport
        if down is None or up is None or up.is_closing() or self.up.eof_in:
            return False
        if down.get_write_buffer_size() or up.get_write_buffer_size() or self.pending:
            return False
        assert self.armed is not None
        return self.armed(self, data)

    def detach(self) -> tuple[socket.socket, socket.socket]:
        """Stop relaying; the two connections continue on new sockets (dups of ours)."""
        socks: list[socket.socket] = []
        self.detached = True
        for side in (self.down, self.up):
            transport = side.transport
            assert transport is not None
            transport.pause_reading()
            fd = os.dup(transport.get_extra_info("socket").fileno())
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            socks.append(sock)
            transport.abort()  # nothing is buffered: closing our fd leaves the dup open
        return socks[0], socks[1]

    def finish(self) -> None:
        self._finish()

    def _finish(self) -> None:
        if self._on_done is not None:
            cb, self._on_done = self._on_done, None
            cb(self)
