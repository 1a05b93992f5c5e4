"""The agent's session with the traffic manager (WebSocket ``/v1/agent``).

Dial, send ``AgentHello``, expect ``AgentWelcome``, then apply every
``InterceptsSnapshot`` and send a ``Heartbeat`` every few seconds. On any
failure: back off (0.2 s doubling to 5 s) and dial again. The agent keeps
serving meanwhile with the last state it had.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import aiohttp
import anyio
from pydantic import ValidationError

from core.protocol import (
    PROTOCOL_VERSION,
    AgentHello,
    AgentWelcome,
    ErrorReply,
    Heartbeat,
    InterceptsSnapshot,
    dump_message,
    major,
    parse_message,
)

log = logging.getLogger(__name__)


class ManagerSession:
    def __init__(
        self,
        address: str,
        hello: AgentHello,
        on_snapshot: Callable[[InterceptsSnapshot], None],
        *,
        heartbeat: float = 5.0,
        backoff_min: float = 0.2,
        backoff_max: float = 5.0,
    ) -> None:
        self.url = address if "://" in address else f"http://{address}"
        self.url = self.url.rstrip("/") + "/v1/agent"
        self.hello = hello
        self.on_snapshot = on_snapshot
        self.heartbeat = heartbeat
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.agent_id = ""
        self.connected = anyio.Event()
        self.connects = 0
        self.last_error = ""

    async def run(self) -> None:
        delay = self.backoff_min
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    await self._session(http)
                    delay = self.backoff_min
                except (
                    aiohttp.ClientError,
                    OSError,
                    TimeoutError,
                    ValidationError,
                    ManagerRefused,
                ) as exc:
                    self.last_error = str(exc) or type(exc).__name__
                    log.warning("manager session: %s (retrying in %.1fs)", self.last_error, delay)
                self.connected = anyio.Event()
                await anyio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)

    async def _session(self, http: aiohttp.ClientSession) -> None:
        async with http.ws_connect(
            self.url, heartbeat=None, timeout=aiohttp.ClientWSTimeout(ws_close=2)
        ) as ws:
            await ws.send_str(dump_message(self.hello))
            with anyio.fail_after(10):
                first = await ws.receive()
            if first.type != aiohttp.WSMsgType.TEXT:
                raise ManagerRefused(
                    f"manager closed the session before welcoming us ({first.type.name})"
                )
            welcome = parse_message(first.data)
            if isinstance(welcome, ErrorReply):
                raise ManagerRefused(f"{welcome.error.title}: {welcome.error.message}")
            if not isinstance(welcome, AgentWelcome):
                raise ManagerRefused(f"expected agent-welcome, got {welcome.type}")
            if major(welcome.version) != major(PROTOCOL_VERSION):
                raise ManagerRefused(
                    f"manager speaks {welcome.version}, agent speaks {PROTOCOL_VERSION}"
                )
            self.agent_id = welcome.agent_id
            self.connects += 1
            self.connected.set()
            log.info("registered with the manager as %s", self.agent_id)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._beat, ws)
                try:
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            continue
                        try:
                            parsed = parse_message(msg.data)
                        except ValidationError as exc:
                            log.warning("ignoring a bad message from the manager: %s", exc)
                            continue
                        if isinstance(parsed, InterceptsSnapshot):
                            self.on_snapshot(parsed)
                        elif isinstance(parsed, ErrorReply):
                            raise ManagerRefused(f"{parsed.error.title}: {parsed.error.message}")
                finally:
                    tg.cancel_scope.cancel()
            raise ManagerRefused("the manager closed the session")

    async def _beat(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        beat = dump_message(Heartbeat())
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            while not ws.closed:
                await anyio.sleep(self.heartbeat)
                await ws.send_str(beat)


class ManagerRefused(Exception):
    """The manager ended or refused the session (retried with back-off)."""
