"""Port-forwards as anyio byte streams, and a local listener that forwards each connection.

``open_portforward`` gives one connection to a pod's port (the tunnel to an
agent). ``LocalForward`` listens on the workstation's loopback and opens a
fresh port-forward for every accepted connection, like ``kubectl
port-forward``; the manager's client API is reached through one, so ordinary
HTTP/WebSocket clients can talk to it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from core.kube import Kube, PortForward

__all__ = ["LocalForward", "PortForwardStream", "open_portforward", "relay"]

CONNECT_TIMEOUT = 15.0


class PortForwardStream(anyio.abc.ByteStream):
    """A byte stream over one port-forwarded connection."""

    def __init__(self, pf: PortForward, stream: anyio.abc.SocketStream) -> None:
        self._pf = pf
        self._stream = stream

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._stream.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self._stream.send(item)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._stream.aclose()
        self._pf.close()

    @property
    def extra_attributes(self) -> Any:
        return self._stream.extra_attributes

    def error(self) -> str | None:
        """What the far end reported on the error channel (e.g. nothing listens)."""
        return self._pf.error()


async def open_portforward(
    kube: Kube, pod: str, namespace: str, port: int, *, timeout: float = CONNECT_TIMEOUT
) -> PortForwardStream:
    """Connect to ``port`` on ``pod`` (its loopback) through the API server."""
    with anyio.fail_after(timeout):
        pf = await anyio.to_thread.run_sync(
            kube.portforward, pod, namespace, port, abandon_on_cancel=True
        )
    pf.socket.setblocking(False)
    stream = await anyio.abc.UNIXSocketStream.from_socket(pf.socket)
    return PortForwardStream(pf, stream)


async def relay(a: anyio.abc.ByteStream, b: anyio.abc.ByteStream) -> None:
    """Copy both ways until both directions end; half-closes are passed on."""

    async def pump(src: anyio.abc.ByteStream, dst: anyio.abc.ByteStream) -> None:
        try:
            async for chunk in src:
                await dst.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            tg.cancel_scope.cancel()
            return
        with contextlib.suppress(Exception):
            await dst.send_eof()

    async with anyio.create_task_group() as tg:
        tg.start_soon(pump, a, b)
        tg.start_soon(pump, b, a)


Target = Callable[[], Awaitable[tuple[str, str]]]
"""Returns (pod, namespace) to forward the next connection to."""


class LocalForward:
    """A loopback listener forwarding every connection to ``port`` on a pod."""

    def __init__(self, kube: Kube, target: Target, port: int, *, host: str = "127.0.0.1") -> None:
        self.kube = kube
        self.target = target
        self.port = port
        self.host = host
        self.local_port = 0
        self.last_error: Exception | None = None
        """Why the last connection could not be forwarded (for error messages)."""

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=0)
        self.local_port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener:
            task_status.started(self.local_port)
            await listener.serve(self._handle)

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            try:
                pod, namespace = await self.target()
                remote = await open_portforward(self.kube, pod, namespace, self.port)
            except Exception as exc:
                self.last_error = exc  # the client sees the connection close
                return
            self.last_error = None
            async with remote:
                await relay(client, remote)
