"""Sessions with a real manager client API and real agent tunnels.

Covers: connect and welcome; intercept = prepare (progress reported) +
create + a tunnel to every agent pod; intercepted connections reach the
local port through the tunnel; traffic events reach the session's feed;
leave removes the intercept and drops the tunnels; re-running a name moves
the intercept; a manager restart is survived: the session reconnects with
its id and intercepts and the new manager's registry holds them again; a
broken tunnel is reopened; an agent that cannot be reached makes intercept
fail with AgentNotArriving and the reason; conflicts come back as
ManagerRefused.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator

import anyio
import anyio.abc
import pytest

from core.errors import AgentNotArriving, ManagerMissing, ManagerRefused
from core.protocol import InterceptSpec, TrafficEvent
from core.session import Session
from tests.core.managerkit import Agents, serve_manager


class UrlBox:
    def __init__(self, url: str) -> None:
        self.url = url

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[str]:
        yield self.url


async def _local_server(tg: anyio.abc.TaskGroup, reply: bytes) -> int:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def handle(client: anyio.abc.SocketStream) -> None:
        async with client:
            data = await client.receive()
            await client.send(reply + b":" + data)

    async def serve() -> None:
        async with listener:
            await listener.serve(handle)

    tg.start_soon(serve)
    return int(listener.extra(anyio.abc.SocketAttribute.local_port))


def _spec(name: str, port: int, service_port: int = 80) -> InterceptSpec:
    return InterceptSpec(
        name=name,
        namespace="demo",
        workload="orders",
        service="orders",
        service_port=service_port,
        local_port=port,
    )


async def _through(agents: Agents, pod: str, intercept_id: str, payload: bytes) -> bytes:
    tunnel = agents.tunnels[pod]
    with anyio.fail_after(10):
        stream = await tunnel.open_stream(
            kind="tcp", intercept=intercept_id, peer="10.0.0.9:5555", port=80
        )
        await stream.wait_response()
        await stream.send(payload)
        await stream.send_eof()
        chunks = b""
        while data := await stream.receive():
            chunks += data
        return chunks


async def test_intercept_traffic_leave_and_restart() -> None:
    async with anyio.create_task_group() as tg:
        local = await _local_server(tg, b"local")
        async with serve_manager() as manager:
            manager.add_agent("orders-a")
            manager.add_agent("orders-b")
            box = UrlBox(manager.url)
            agents = Agents(tg)
            session = Session(
                context="test", connector=box.connect, opener=agents.open, max_backoff=0.3
            )
            await tg.start(session.run)
            assert session.session_id and session.welcome and session.welcome.mode == "single-user"
            said: list[str] = []
            info = await session.intercept(_spec("orders-demo", local), said.append)
            assert info.id == f"{session.session_id}:orders-demo"
            assert any("agent present" in s for s in said)
            assert set(agents.tunnels) == {"orders-a", "orders-b"}
            for pod in ("orders-a", "orders-b"):
                assert await _through(agents, pod, info.id, b"hi") == b"local:hi"
            # traffic events pushed by an agent arrive in the session's feed
            feed = session.traffic()
            agents.tunnels["orders-a"].push(
                TrafficEvent(pod="orders-a", intercept=info.id, routed="workstation")
            )
            with anyio.fail_after(10):
                event = await feed.__anext__()
            assert event.pod == "orders-a" and event.routed == "workstation"
            await feed.aclose()
            # re-running the name with another port moves it
            moved = await session.intercept(_spec("orders-demo", local, service_port=9090))
            assert moved.spec.service_port == 9090
            assert [i.spec.service_port for i in manager.registry.intercepts()] == [9090]
            old_registry = manager.registry
        # the manager goes away and comes back empty: the session restores its intercept
        async with serve_manager() as manager2:
            manager2.add_agent("orders-a")
            box.url = manager2.url
            with anyio.fail_after(15):
                while not manager2.registry.intercepts():
                    await anyio.sleep(0.05)
            restored = manager2.registry.intercepts()
            assert [i.id for i in restored] == [info.id]
            assert old_registry is not manager2.registry
            with anyio.fail_after(10):
                while session._client is None:
                    await anyio.sleep(0.05)
            gone = await session.leave("orders-demo")
            assert gone.state == "removed"
            assert manager2.registry.intercepts() == []
            session.stop()
        tg.cancel_scope.cancel()


async def test_broken_tunnel_reopens_and_unreachable_agent() -> None:
    async with anyio.create_task_group() as tg:
        local = await _local_server(tg, b"ok")
        async with serve_manager() as manager:
            manager.add_agent("orders-a")
            box = UrlBox(manager.url)
            agents = Agents(tg)
            session = Session(
                context="test", connector=box.connect, opener=agents.open, max_backoff=0.3
            )
            await tg.start(session.run)
            info = await session.intercept(_spec("orders-demo", local))
            first = agents.tunnels["orders-a"]
            await first.aclose()
            with anyio.fail_after(10):
                while (
                    agents.tunnels["orders-a"] is first
                    or agents.tunnels["orders-a"].session_id == ""
                ):
                    await anyio.sleep(0.05)
            with anyio.fail_after(10):
                while True:
                    with contextlib.suppress(Exception):
                        if await _through(agents, "orders-a", info.id, b"x") == b"ok:x":
                            break
                    await anyio.sleep(0.05)
            # an agent nobody can reach: intercept fails with the reason
            manager.add_agent("ledger-a", workload="ledger")
            agents.refuse.add("ledger-a")
            spec = InterceptSpec(
                name="ledger-demo",
                namespace="demo",
                workload="ledger",
                service="ledger",
                service_port=80,
                local_port=local,
            )
            with pytest.raises(AgentNotArriving, match="ledger-a refuses"):
                await session.intercept(spec, tunnel_timeout=1.0)
            session.stop()
        tg.cancel_scope.cancel()


async def test_conflict_is_manager_refused() -> None:
    async with anyio.create_task_group() as tg:
        local = await _local_server(tg, b"ok")
        async with serve_manager() as manager:
            manager.add_agent("orders-a")
            sessions = []
            for _ in range(2):
                agents = Agents(tg)
                s = Session(
                    context="test", connector=UrlBox(manager.url).connect, opener=agents.open
                )
                await tg.start(s.run)
                sessions.append(s)
            await sessions[0].intercept(_spec("mine", local))
            with pytest.raises(ManagerRefused) as info:
                await sessions[1].intercept(_spec("theirs", local))
            assert info.value.problem_code == "conflict"
            for s in sessions:
                s.stop()
        tg.cancel_scope.cancel()


async def test_no_manager_is_a_typed_error() -> None:
    @contextlib.asynccontextmanager
    async def nowhere() -> AsyncIterator[str]:
        raise ManagerMissing("waylay", "no Deployment 'waylay-manager'")
        yield ""  # pragma: no cover

    async def never(pod: str, namespace: str, port: int) -> anyio.abc.ByteStream:
        raise AssertionError("no tunnels without a manager")

    async with anyio.create_task_group() as tg:
        with pytest.raises(ManagerMissing, match="not running"):
            await tg.start(Session(context="t", connector=nowhere, opener=never).run)
        # a URL where nothing listens is ManagerMissing too, not a transport error
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with pytest.raises(ManagerMissing, match="cannot open the client API"):
            await tg.start(
                Session(
                    context="t",
                    connector=UrlBox(f"http://127.0.0.1:{port}/v1/client").connect,
                    opener=never,
                ).run
            )
