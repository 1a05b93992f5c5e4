"""Watching all traffic through the agents, over a real manager, a real agent and real tunnels.

The manager is the real client API (``tests.core.managerkit``); the agent is a
real ``agent.app.Agent`` in front of a real HTTP app, holding the personal
intercept the manager created; the session reaches the agent's real tunnel
port over TCP (the port-forward replaced by a direct connection).

Covers: without watching, a request that matched no intercept never reaches
the session's feed, while our own intercepted request does (with headers);
``set_watch_all(True)`` opens a watcher tunnel (``<id>/watch``, ``watch_all``)
and then the unmatched request arrives as metadata only (no headers), routed
to the app, with the reason it missed; our own request still arrives once,
with its headers (the watcher's copy is dropped); a subscriber that did not
ask for others never sees others' traffic; ``set_watch_all(False)`` closes the
watcher tunnel and others' traffic stops while ours keeps flowing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import anyio.abc
from aiohttp import web

from agent.app import Agent
from agent.config import AgentSettings
from core.protocol import AgentConfig, InterceptSpec, TakeoverPort, TrafficEvent
from core.session import Session, watcher_id
from tests.core.managerkit import serve_manager

WAIT = 10.0


@contextlib.asynccontextmanager
async def http_server(name: str) -> AsyncIterator[int]:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"{name}:{request.path}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


def agent_for(
    app_port: int, *, namespace: str = "ns", workload: str = "hello", pod: str = "hello-1"
) -> Agent:
    """A real agent (no manager) in front of ``app_port`` as service port 80 of ``workload``."""
    port = TakeoverPort(
        service=workload, service_port=80, app_container="app", app_port=app_port, agent_port=0
    )
    return Agent(
        AgentSettings(
            config=AgentConfig(
                workload_kind="Deployment",
                workload_name=workload,
                namespace=namespace,
                manager_address="127.0.0.1:1",
                ports=[port],
                tunnel_port=0,
            ),
            pod_name=pod,
            namespace=namespace,
            pod_ip="127.0.0.1",
            app_host="127.0.0.1",
            tunnel_host="127.0.0.1",
        )
    )


async def get(port: int, path: str, headers: dict[str, str]) -> str:
    """One HTTP/1.1 request on its own connection; the body of the answer."""
    lines = [f"GET {path} HTTP/1.1", "host: hello", "connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with anyio.fail_after(WAIT):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(("\r\n".join(lines) + "\r\n\r\n").encode())
            raw = b""
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                while True:
                    raw += await stream.receive()
    return raw.partition(b"\r\n\r\n")[2].decode()


class Feed:
    """Collects one ``Session.traffic`` subscription in the background."""

    def __init__(self) -> None:
        self.events: list[TrafficEvent] = []

    async def run(self, session: Session, others: bool) -> None:
        async for event in session.traffic(others=others):
            self.events.append(event)

    def paths(self) -> list[str]:
        return [e.path for e in self.events]


async def until(cond, what: str) -> None:  # type: ignore[no-untyped-def]
    with anyio.fail_after(WAIT):
        while not cond():
            await anyio.sleep(0.02)


async def test_unmatched_requests_show_with_reason_only_when_watching_all() -> None:
    async with (
        http_server("app") as app_port,
        http_server("workstation") as local_port,
        anyio.create_task_group() as tg,
    ):
        agent = agent_for(app_port)
        await tg.start(lambda task_status: agent.run(manager=False, task_status=task_status))
        http_port = agent.listeners[0].address[1]
        tunnel_host, tunnel_port = agent.tunnels.address

        async def opener(pod: str, namespace: str, port: int) -> anyio.abc.ByteStream:
            assert (pod, namespace) == ("hello-1", "ns")
            return await anyio.connect_tcp(tunnel_host, tunnel_port)

        async with serve_manager() as manager:
            manager.add_agent("hello-1", workload="hello", namespace="ns")
            url = manager.url

            @contextlib.asynccontextmanager
            async def connector() -> AsyncIterator[str]:
                yield url

            session = Session(context="test", connector=connector, opener=opener)
            await tg.start(session.run)
            watching, mine_only = Feed(), Feed()
            tg.start_soon(watching.run, session, True)  # subscribed long before any traffic
            tg.start_soon(mine_only.run, session, False)
            spec = InterceptSpec(
                name="mine",
                namespace="ns",
                workload="hello",
                service="hello",
                service_port=80,
                mechanism="http",
                headers={"x-dev": "alice"},
                local_port=local_port,
            )
            info = await session.intercept(spec)
            agent.apply(manager.registry.intercepts())  # what the manager pushes to agents

            # not watching: only our own request reaches the feed
            assert await get(http_port, "/missed-1", {"x-dev": "carol"}) == "app:/missed-1"
            body = await get(http_port, "/mine-1", {"x-dev": "alice", "cookie": "a=b"})
            assert body == "workstation:/mine-1"
            await until(lambda: "/mine-1" in watching.paths(), "our own event")
            ours = next(e for e in watching.events if e.path == "/mine-1")
            assert ours.intercept == info.id and ours.routed == "workstation"
            assert ours.headers.get("x-dev") == "alice" and ours.headers["cookie"] == "<redacted>"
            assert "/missed-1" not in watching.paths()
            assert not agent.sessions.watched

            # watching all: the unmatched request arrives with why it missed
            await session.set_watch_all(True)
            await until(lambda: session.watchers_connected() == 1, "watcher tunnel up")
            assert agent.sessions.live(watcher_id(info.session_id)) is not None
            assert agent.sessions.watched
            assert await get(http_port, "/missed-2", {"x-dev": "carol"}) == "app:/missed-2"
            await get(http_port, "/mine-2", {"x-dev": "alice"})
            await until(lambda: {"/missed-2", "/mine-2"} <= set(watching.paths()), "both events")
            missed = next(e for e in watching.events if e.path == "/missed-2")
            assert missed.routed == "app" and missed.intercept == "" and missed.client == ""
            assert "x-dev" in missed.reason and "carol" in missed.reason
            assert missed.headers == {}  # metadata only
            assert watching.paths().count("/mine-2") == 1  # not doubled by the watcher
            mine2 = next(e for e in watching.events if e.path == "/mine-2")
            assert mine2.headers.get("x-dev") == "alice"
            await until(lambda: "/mine-2" in mine_only.paths(), "mine-only feed")
            assert not {"/missed-1", "/missed-2"} & set(mine_only.paths())

            # stop watching: the watcher tunnel closes; our traffic keeps flowing
            await session.set_watch_all(False)
            await until(
                lambda: agent.sessions.live(watcher_id(info.session_id)) is None,
                "watcher tunnel closed",
            )
            await until(lambda: not agent.sessions.watched, "agent no longer watched")
            await get(http_port, "/missed-3", {"x-dev": "carol"})
            await get(http_port, "/mine-3", {"x-dev": "alice"})
            await until(lambda: "/mine-3" in watching.paths(), "our event after watching")
            assert "/missed-3" not in watching.paths()
            session.stop()
        tg.cancel_scope.cancel()
