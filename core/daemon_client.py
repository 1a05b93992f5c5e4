"""Talking to the per-user daemon, starting it on demand.

    client = await DaemonClient.connect()          # starts the daemon if needed
    info = await client.call("intercept", {...}, progress=print)
    async for push in client.subscribe(): ...      # on its own connection

Errors the daemon reports come back as ``RemoteError`` carrying the original
code, title and hint; warnings attached to a reply are kept in
``last_warnings``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream
from pydantic import TypeAdapter, ValidationError

from core.daemon_line import spawn_daemon
from core.daemon_protocol import (
    DaemonError,
    DaemonProgress,
    DaemonPush,
    DaemonReply,
    DaemonRequest,
    socket_path,
)
from core.errors import DaemonUnavailable, RemoteError, VersionSkew
from core.protocol import PROTOCOL_VERSION, major

__all__ = ["DaemonClient", "remote_error"]

START_TIMEOUT = 15.0
MAX_LINE = 1 << 22
_LINE: TypeAdapter[DaemonReply | DaemonProgress | DaemonPush] = TypeAdapter(
    DaemonReply | DaemonProgress | DaemonPush
)


def remote_error(err: DaemonError) -> RemoteError:
    return RemoteError(err.code, err.title, err.hint, detail=err.detail, severity=err.severity)


class DaemonClient:
    def __init__(self, stream: anyio.abc.SocketStream, path: Path) -> None:
        self.stream = stream
        self.path = path
        self._reader = BufferedByteReceiveStream(stream)
        self._ids = itertools.count(1)
        self._lock = anyio.Lock()
        self.last_warnings: list[DaemonError] = []
        self.daemon_pid = 0

    @classmethod
    async def connect(
        cls, path: Path | None = None, *, start: bool = True, timeout: float = START_TIMEOUT
    ) -> DaemonClient:
        """Connect (starting ``python -m core.daemon`` when none runs) and say hello."""
        where = path or socket_path()
        stream = await cls._dial(where)
        if stream is None:
            if not start:
                raise DaemonUnavailable(str(where), "no daemon is running")
            cls._spawn(where)
            with anyio.move_on_after(timeout):
                while stream is None:
                    await anyio.sleep(0.05)
                    stream = await cls._dial(where)
            if stream is None:
                raise DaemonUnavailable(
                    str(where), f"the daemon did not start; see {where.parent / 'daemon.log'}"
                )
        client = cls(stream, where)
        try:
            hello = await client.call("hello", {"version": PROTOCOL_VERSION})
        except RemoteError as err:
            await client.aclose()
            raise VersionSkew(PROTOCOL_VERSION, err.detail, peer="waylay daemon") from None
        if major(str(hello.get("version", ""))) != major(PROTOCOL_VERSION):
            await client.aclose()
            raise VersionSkew(PROTOCOL_VERSION, str(hello.get("version")), peer="waylay daemon")
        client.daemon_pid = int(hello.get("pid", 0))
        return client

    @staticmethod
    async def _dial(path: Path) -> anyio.abc.SocketStream | None:
        try:
            with anyio.fail_after(2):
                return await anyio.connect_unix(path)
        except (OSError, TimeoutError):
            return None

    @staticmethod
    def _spawn(path: Path) -> None:
        spawn_daemon(path)

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.stream.aclose()

    async def __aenter__(self) -> DaemonClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _read(self) -> DaemonReply | DaemonProgress | DaemonPush:
        try:
            raw = await self._reader.receive_until(b"\n", MAX_LINE)
        except (
            anyio.EndOfStream,
            anyio.IncompleteRead,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            OSError,
        ):
            raise DaemonUnavailable(str(self.path), "the daemon closed the connection")
        try:
            return _LINE.validate_json(raw)
        except ValidationError as exc:
            raise DaemonUnavailable(str(self.path), f"unreadable answer: {exc}")

    async def call(
        self,
        op: str,
        params: dict[str, Any] | None = None,
        *,
        progress: Callable[[str], None] | None = None,
        timeout: float = 300.0,
    ) -> Any:
        """One request; progress lines go to ``progress``; errors raise RemoteError."""
        async with self._lock:
            req = DaemonRequest(id=next(self._ids), op=op, params=params or {})  # type: ignore[arg-type]
            try:
                await self.stream.send(req.model_dump_json().encode() + b"\n")
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                # also a connection this client (or its owner) closed meanwhile:
                # unavailable, not a bug
                raise DaemonUnavailable(str(self.path), f"cannot send: {exc!r}")
            with anyio.fail_after(timeout):
                while True:
                    line = await self._read()
                    if isinstance(line, DaemonProgress):
                        if line.id == req.id and progress is not None:
                            progress(line.message)
                    elif isinstance(line, DaemonReply) and line.id == req.id:
                        break
        self.last_warnings = list(line.warnings)
        if not line.ok:
            raise remote_error(line.error or DaemonError(code="unknown", title=f"{op} failed"))
        return line.result

    async def subscribe(self, *, watch_all: bool = False) -> AsyncIterator[DaemonPush]:
        """Subscribe now; iterate the result for traffic and intercept pushes.

        Use a connection of its own for this: it carries nothing else afterwards.
        Traffic pushes carry ``mine``; with ``watch_all`` they also include every other
        session's traffic through the agents (metadata only, with why it missed).
        """
        await self.call("subscribe", {"watch_all": watch_all} if watch_all else None)
        return self._pushes()

    async def _pushes(self) -> AsyncIterator[DaemonPush]:
        while True:
            line = await self._read()
            if isinstance(line, DaemonPush):
                yield line
