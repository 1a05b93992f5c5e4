"""One tunnel to every agent pod our intercepts use, kept open.

``TunnelSet.update(agents)`` is told the current agent pods (from the
manager); it opens a port-forward and a ``core.tunnel.ClientTunnel`` to each
new one, closes those that are gone, and reconnects broken tunnels with
back-off for as long as their agent is listed. New replicas therefore join
automatically.

A set made with ``watch_all=True`` is a watcher: the agent also sends it the
metadata (no headers) of all other traffic, including why unmatched requests
did not match.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import anyio.abc

from core.protocol import Message, TrafficEvent
from core.tunnel import ClientTunnel, Resolver

__all__ = ["AgentRef", "StreamOpener", "TunnelSet"]

StreamOpener = Callable[[str, str, int], Awaitable[anyio.abc.ByteStream]]
"""(pod, namespace, port) -> a connected byte stream (a port-forward in production)."""


@dataclass(frozen=True)
class AgentRef:
    pod: str
    namespace: str
    tunnel_port: int


class TunnelSet:
    def __init__(
        self,
        tg: anyio.abc.TaskGroup,
        opener: StreamOpener,
        *,
        session_id: str,
        resolve: Resolver,
        on_traffic: Callable[[TrafficEvent], None],
        watch_all: bool = False,
        max_backoff: float = 5.0,
    ) -> None:
        self._tg = tg
        self._opener = opener
        self.session_id = session_id
        self._resolve = resolve
        self._on_traffic = on_traffic
        self.watch_all = watch_all
        """Ask each agent for everyone's traffic as metadata too (``TunnelHello.watch_all``)."""
        self._max_backoff = max_backoff
        self._scopes: dict[AgentRef, anyio.CancelScope] = {}
        self.connected: set[AgentRef] = set()
        """Agents whose tunnel is up right now."""
        self.errors: dict[AgentRef, str] = {}
        """The last failure per agent (why it is not connected)."""

    def update(self, agents: set[AgentRef]) -> None:
        for gone in set(self._scopes) - agents:
            self._scopes.pop(gone).cancel()
            self.connected.discard(gone)
            self.errors.pop(gone, None)
        for new in agents - set(self._scopes):
            scope = anyio.CancelScope()
            self._scopes[new] = scope
            self._tg.start_soon(self._keep, new, scope)

    def close(self) -> None:
        self.update(set())

    async def wait_connected(self, agents: set[AgentRef], timeout: float) -> bool:
        """Until every agent in ``agents`` has its tunnel up; False on timeout."""
        with anyio.move_on_after(timeout):
            while not agents <= self.connected:
                await anyio.sleep(0.05)
            return True
        return False

    async def _keep(self, agent: AgentRef, scope: anyio.CancelScope) -> None:
        backoff = 0.2
        with scope:
            while True:
                try:
                    stream = await self._opener(agent.pod, agent.namespace, agent.tunnel_port)
                except Exception as exc:
                    self.errors[agent] = f"{type(exc).__name__}: {exc}"
                else:
                    try:
                        await self._serve(agent, stream)
                        backoff = 0.2
                    except Exception as exc:
                        self.errors[agent] = f"{type(exc).__name__}: {exc}"
                    finally:
                        self.connected.discard(agent)
                        with contextlib.suppress(Exception):
                            await stream.aclose()
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    async def _serve(self, agent: AgentRef, stream: anyio.abc.ByteStream) -> None:
        tunnel = ClientTunnel(
            stream,
            session_id=self.session_id,
            resolve=self._resolve,
            watch_all=self.watch_all,
            on_message=self._message,
        )
        async with anyio.create_task_group() as tg:
            await tg.start(tunnel.run)
            self.connected.add(agent)
            self.errors.pop(agent, None)

    def _message(self, msg: Message) -> None:
        if isinstance(msg, TrafficEvent):
            self._on_traffic(msg)
