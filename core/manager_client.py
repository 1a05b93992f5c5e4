"""The client side of the manager's client API (``/v1/client``, one WebSocket).

``ClientHello`` -> ``ClientWelcome``; then ``Request``/``Response`` pairs
matched by id (many in flight), ``Heartbeat`` from us every few seconds, and
``Event`` pushes from the manager. Failures become ``core.errors``:
``version-skew`` -> VersionSkew, ``unauthorized`` -> NotLoggedIn, any other
``Problem`` -> ManagerRefused, a connection that cannot be made or breaks ->
ManagerMissing.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream
from pydantic import ValidationError

from core.broadcast import Broadcast
from core.errors import ManagerError, ManagerMissing, ManagerRefused, NotLoggedIn, VersionSkew
from core.protocol import (
    PROTOCOL_VERSION,
    ClientHello,
    ClientWelcome,
    ErrorReply,
    Event,
    Heartbeat,
    Problem,
    Request,
    Response,
    dump_message,
    parse_message,
)

__all__ = ["ManagerClient", "problem_error", "single_error"]

HEARTBEAT_INTERVAL = 3.0
HELLO_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0


def problem_error(problem: Problem, *, context: str = "") -> ManagerError:
    """The typed error for a Problem the manager answered with."""
    if problem.code == "version-skew":
        theirs = problem.message.rsplit("manager ", 1)[-1] if "manager " in problem.message else "?"
        return VersionSkew(PROTOCOL_VERSION, theirs)
    if problem.code == "unauthorized":
        err: ManagerError = ManagerRefused(
            problem.code, problem.title, problem.message, problem.hint
        )
        if context:
            not_logged = NotLoggedIn(context)
            err = ManagerRefused(problem.code, problem.title, problem.message, not_logged.hint)
        return err
    return ManagerRefused(problem.code, problem.title, problem.message, problem.hint)


def single_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error inside a task group's exception group (the caller's own)."""
    if len(group.exceptions) == 1:
        inner = group.exceptions[0]
        return single_error(inner) if isinstance(inner, BaseExceptionGroup) else inner
    return group


class ManagerClient:
    """One open session with the manager. Use ``async with ManagerClient.open(...)``."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, welcome: ClientWelcome) -> None:
        self.ws = ws
        self.welcome = welcome
        self._ids = itertools.count(1)
        self._waiting: dict[int, MemoryObjectSendStream[Response]] = {}
        self._progress: dict[int, Callable[[dict[str, Any]], None]] = {}
        self._events: Broadcast[Event] = Broadcast(512)
        self.closed = anyio.Event()
        self.close_reason = ""

    @property
    def session_id(self) -> str:
        return self.welcome.session_id

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, url: str, hello: ClientHello, *, context: str = "", timeout: float = HELLO_TIMEOUT
    ) -> AsyncIterator[ManagerClient]:
        """Connect, say hello, and keep the session alive until the block ends."""
        async with aiohttp.ClientSession() as http:
            try:
                with anyio.fail_after(timeout):
                    ws = await http.ws_connect(url, heartbeat=None, autoping=True)
                    await ws.send_str(dump_message(hello))
                    raw = await ws.receive()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise ManagerMissing("waylay", f"cannot open the client API at {url}: {exc}")
            if raw.type != aiohttp.WSMsgType.TEXT:
                await ws.close()
                raise ManagerMissing(
                    "waylay", f"the manager closed the connection ({raw.type.name})"
                )
            msg = parse_message(raw.data)
            if isinstance(msg, ErrorReply):
                await ws.close()
                raise problem_error(msg.error, context=context)
            if not isinstance(msg, ClientWelcome):
                await ws.close()
                raise ManagerMissing("waylay", f"expected client-welcome, got {msg.type}")
            client = cls(ws, msg)
            try:
                async with ws, anyio.create_task_group() as tg:
                    tg.start_soon(client._reader)
                    tg.start_soon(client._heartbeat)
                    try:
                        yield client
                    finally:
                        tg.cancel_scope.cancel()
                        client._finish("closed by us")
            except BaseExceptionGroup as group:
                raise single_error(group)

    # ---------------------------------------------------------------- requests

    async def request(
        self,
        op: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float = REQUEST_TIMEOUT,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> Any:
        """Send one request and wait for its response; raises ManagerError."""
        if self.closed.is_set():
            raise ManagerMissing("waylay", f"the session is closed: {self.close_reason}")
        req = Request(id=next(self._ids), op=op, params=params or {})  # type: ignore[arg-type]
        send, receive = anyio.create_memory_object_stream[Response](1)
        self._waiting[req.id] = send
        if progress is not None:
            self._progress[req.id] = progress
        try:
            await self.ws.send_str(dump_message(req))
            with anyio.fail_after(timeout):
                async with receive:
                    try:
                        response = await receive.receive()
                    except anyio.EndOfStream:
                        raise ManagerMissing("waylay", f"connection lost: {self.close_reason}")
        except TimeoutError:
            raise ManagerMissing("waylay", f"no answer to {op!r} within {timeout:.0f}s")
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise ManagerMissing("waylay", f"connection lost: {exc}")
        finally:
            self._waiting.pop(req.id, None)
            self._progress.pop(req.id, None)
        if not response.ok:
            raise problem_error(
                response.error or Problem(code="unknown", title=f"{op} failed", message="")
            )
        return response.result

    async def events(self) -> AsyncIterator[Event]:
        """Events pushed by the manager from now on, until the session closes."""
        async for event in self._events.subscribe():
            yield event

    # ---------------------------------------------------------------- internals

    async def _heartbeat(self) -> None:
        while not self.closed.is_set():
            await anyio.sleep(HEARTBEAT_INTERVAL)
            with contextlib.suppress(Exception):
                await self.ws.send_str(dump_message(Heartbeat()))

    async def _reader(self) -> None:
        reason = "the manager closed the connection"
        try:
            async for raw in self.ws:
                if raw.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    msg = parse_message(raw.data)
                except ValidationError:
                    continue
                if isinstance(msg, Response):
                    waiter = self._waiting.get(msg.id)
                    if waiter is not None:
                        with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError):
                            waiter.send_nowait(msg)
                elif isinstance(msg, Event):
                    self._dispatch_event(msg)
                elif isinstance(msg, ErrorReply):
                    reason = f"{msg.error.title}: {msg.error.message}"
        except (aiohttp.ClientError, ConnectionError) as exc:
            reason = f"connection lost: {exc}"
        self._finish(reason)

    def _dispatch_event(self, event: Event) -> None:
        if event.kind == "progress":
            callback = self._progress.get(int(event.data.get("request", -1)))
            if callback is not None:
                callback(event.data)
        self._events.publish(event)

    def _finish(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.closed.set()
        for send in list(self._waiting.values()):
            send.close()
        self._events.close()
