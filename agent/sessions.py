"""Live client tunnels by session, and traffic events routed to them.

A session's events: every event of its own intercepts, with (redacted)
headers. A tunnel that asked for ``watch_all`` also gets every other event
through the agent as metadata only (no headers), to debug why a request was
not caught.
"""

from __future__ import annotations

from core.protocol import ErrorReply, InterceptInfo, Problem, TrafficEvent, redact
from core.tunnel import AgentTunnel


class Sessions:
    def __init__(self, pod: str) -> None:
        self.pod = pod
        self._tunnels: dict[str, AgentTunnel] = {}
        self._watchers = 0
        self._told: set[tuple[str, str]] = set()

    def add(self, tunnel: AgentTunnel) -> AgentTunnel | None:
        """Register a handshaken tunnel; returns the one it replaces (to close)."""
        old = self._tunnels.get(tunnel.session_id)
        self._tunnels[tunnel.session_id] = tunnel
        self._recount()
        return old if old is not tunnel else None

    def remove(self, tunnel: AgentTunnel) -> None:
        if self._tunnels.get(tunnel.session_id) is tunnel:
            del self._tunnels[tunnel.session_id]
        self._recount()

    def _recount(self) -> None:
        self._watchers = sum(1 for t in self._tunnels.values() if t.watch_all)

    def live(self, session_id: str) -> AgentTunnel | None:
        tunnel = self._tunnels.get(session_id)
        if tunnel is None or tunnel.closed:
            return None
        return tunnel

    @property
    def watched(self) -> bool:
        """Is anyone watching all traffic (so pass-through events are worth making)?"""
        return self._watchers > 0

    def publish(self, event: TrafficEvent) -> None:
        event.pod = self.pod
        if event.headers:
            event.headers = redact(event.headers)
        owner = event.intercept.split(":", 1)[0] if event.intercept else ""
        metadata: TrafficEvent | None = None
        for session_id, tunnel in list(self._tunnels.items()):
            if tunnel.closed:
                continue
            if session_id == owner:
                tunnel.push(event)
            elif tunnel.watch_all:
                if metadata is None:
                    metadata = event.model_copy(update={"headers": {}})
                tunnel.push(metadata)

    def tell_refusals(self, refused: list[tuple[InterceptInfo, Problem]]) -> None:
        """Send each refused intercept's problem to its client, once per tunnel."""
        for info, problem in refused:
            tunnel = self.live(info.session_id)
            if tunnel is None:
                continue
            key = (info.id, str(id(tunnel)))
            if key in self._told:
                continue
            self._told.add(key)
            tunnel.push(ErrorReply(error=problem))
