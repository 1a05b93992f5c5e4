"""The agent API: ``GET /v1/agent`` (WebSocket) on the manager's pod IP.

An agent says ``AgentHello``, gets ``AgentWelcome`` and at once its
``InterceptsSnapshot``; it then sends ``Heartbeat`` every few seconds and
receives a fresh snapshot whenever its workload's intercepts change (bursts
are coalesced: only the latest state is sent). A hello of another major
version is refused with ``version-skew``. When the socket closes the agent is
unregistered; intercepts stay and wait for the next agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web
from pydantic import ValidationError

from core.protocol import PROTOCOL_VERSION, AgentHello, AgentWelcome, major
from webhook.registry import Change, Registry
from webhook.wsconn import Peer, PeerGone, accept

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0


def agent_app(registry: Registry) -> web.Application:
    app = web.Application()

    async def handle(request: web.Request) -> web.WebSocketResponse:
        peer, first = await accept(request, AgentHello, HELLO_TIMEOUT)
        ws = peer.ws
        if first is None:
            return ws
        if major(first.version) != major(PROTOCOL_VERSION):
            await peer.refuse(
                "version-skew",
                "Agent and manager versions differ",
                f"agent speaks {first.version}, manager {PROTOCOL_VERSION}",
                "upgrade waylay (`waylay install` again) so agent and manager match",
            )
            return ws
        await _serve_agent(registry, peer, first)
        return ws

    app.router.add_get("/v1/agent", handle)
    return app


async def _serve_agent(registry: Registry, peer: Peer, hello: AgentHello) -> None:
    agent = registry.register_agent(hello)
    dirty = asyncio.Event()

    def on_change(change: Change) -> None:
        if change.kind == "intercept":
            dirty.set()

    async def pusher() -> None:
        while True:
            await dirty.wait()
            dirty.clear()
            await peer.send(registry.snapshot_for(agent))

    unsubscribe = registry.subscribe(on_change, agent.workload)
    push = asyncio.create_task(pusher())
    try:
        await peer.send(AgentWelcome(agent_id=agent.id))
        await peer.send(registry.snapshot_for(agent))
        while True:
            try:
                await peer.receive()
            except ValidationError as e:
                log.warning("agent %s sent a malformed frame: %s", agent.id, e)
            registry.keep_alive(agent)
    except PeerGone:
        pass
    finally:
        unsubscribe()
        push.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await push
        registry.unregister_agent(agent.id, agent)
