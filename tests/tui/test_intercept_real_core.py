"""A whole intercept from the keyboard, over real core, a real manager and real tunnels.

The cluster is the sandbox API server (real HTTP, auth, watches); the traffic
manager is the real ``webhook.client_api.ClientApi`` over WebSocket; each
agent end of a tunnel is a real ``core.tunnel.AgentTunnel``
(``tests.core.managerkit``). Only the port-forwards are replaced, by direct
connections, as core's own session tests do.

Covers: the header shows the manager's mode, identity and version; `i`, a
local port typed in, global; live progress from the manager; the result and
``InterceptStarted``; the intercept listed as ours; a connection sent by the
agent reaches the local server through the tunnel, and a traffic event the
agent pushes appears in the traffic pane; a second user's intercept appears
with its owner, live; `l` leaves ours (the manager's registry keeps only the
other user's); `q` with nothing of ours running quits and closes core.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc

from core.protocol import InterceptSpec, TrafficEvent
from core.session import Session
from tests.core import objects as o
from tests.core.apiserver import SandboxApi, serve_api
from tests.core.managerkit import Agents, serve_manager
from tests.tui.conftest import SIZE, Recorder, until
from tui import messages as m
from tui.app import WaylayApp
from tui.core_source import connect_core
from tui.screens.wizard import WizardScreen
from tui.source import ClusterSource
from tui.widgets.header_bar import HeaderBar
from tui.widgets.intercepts_pane import InterceptsPane
from tui.widgets.traffic_log import TrafficLog
from tui.widgets.workload_table import WorkloadTable

WAIT = 30.0


async def populate(api: SandboxApi) -> None:
    orders = await api.create(
        "deployments.apps", o.workload("Deployment", "orders", replicas=1, agent_config=True)
    )
    rs = await api.create("replicasets.apps", o.workload("ReplicaSet", "orders-1", owner=orders))
    await api.create("pods", o.pod("orders-a", rs, agent=True))
    await api.create(
        "services",
        o.service("orders", "orders", ports=[
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "grpc", "port": 9090, "targetPort": 9090},
        ]),
    )  # fmt: skip


async def local_server(tg: anyio.abc.TaskGroup) -> int:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def handle(client: anyio.abc.SocketStream) -> None:
        async with client:
            await client.send(b"local:" + await client.receive())

    async def serve() -> None:
        async with listener:
            await listener.serve(handle)

    tg.start_soon(serve)
    return int(listener.extra(anyio.abc.SocketAttribute.local_port))


async def through(agents: Agents, pod: str, intercept_id: str) -> bytes:
    with anyio.fail_after(10):
        stream = await agents.tunnels[pod].open_stream(
            kind="tcp", intercept=intercept_id, peer="10.0.0.9:5555", port=80
        )
        await stream.wait_response()
        await stream.send(b"hi")
        await stream.send_eof()
        data = b""
        while chunk := await stream.receive():
            data += chunk
        return data


async def test_intercept_traffic_two_users_and_leave(tmp_path: Path, recorder: Recorder) -> None:
    async with anyio.create_task_group() as tg, serve_api(tmp_path) as api:
        await populate(api)
        local = await local_server(tg)
        async with serve_manager() as manager:
            manager.add_agent("orders-a")
            agents = Agents(tg)

            @contextlib.asynccontextmanager
            async def to_manager() -> AsyncIterator[str]:
                yield manager.url

            async def connect() -> ClusterSource:
                return await connect_core(
                    context="admin", kubeconfig=str(api.kubeconfig),
                    connector=to_manager, opener=agents.open,
                )  # fmt: skip

            app = WaylayApp(connect)
            async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
                header = app.main.query_one(HeaderBar)
                await until(pilot, lambda: header.session and header.session.healthy, timeout=WAIT)
                assert header.session is not None and header.session.mode == "single-user"
                table = app.main.query_one(WorkloadTable)
                key = "demo/Deployment/orders"
                await until(pilot, lambda: key in table.workloads, timeout=WAIT)
                table.move_cursor(row=table.get_row_index(key))

                await pilot.press("i")
                await until(pilot, lambda: isinstance(app.screen, WizardScreen))
                wizard = app.screen
                assert isinstance(wizard, WizardScreen)
                await pilot.press("enter")  # port: http
                await pilot.press("ctrl+u", *str(local), "enter", "enter")  # local, global
                await until(pilot, lambda: wizard.phase == "done", timeout=WAIT)
                assert any("agent present in orders" in p.text  # type: ignore[attr-defined]
                           for p in recorder.of(m.InterceptProgress))  # fmt: skip
                outcome = wizard.outcome
                assert outcome is not None and outcome.intercept.spec.local_port == local
                await pilot.press("enter")
                assert recorder.of(m.InterceptStarted)

                pane = app.main.query_one(InterceptsPane)
                await until(pilot, lambda: pane.row_count == 1, timeout=WAIT)
                ours = outcome.intercept.id
                assert pane.get_row_at(0)[2] == "you"

                assert await through(agents, "orders-a", ours) == b"local:hi"
                agents.tunnels["orders-a"].push(
                    TrafficEvent(pod="orders-a", intercept=ours, protocol="http", method="GET",
                                 path="/from-agent", status=200, routed="workstation")
                )  # fmt: skip
                log = app.main.query_one(TrafficLog)
                await until(pilot, lambda: log.row_count == 1, timeout=WAIT)
                assert log.get_row_at(0)[3] == "/from-agent"

                bob = Session(
                    context="admin", connector=to_manager, opener=agents.open, name="bob@laptop"
                )
                await tg.start(bob.run)
                spec = InterceptSpec(
                    name="bob-grpc", namespace="demo", workload="orders", service="orders",
                    service_port=9090, service_port_name="grpc", local_port=local,
                )  # fmt: skip
                await bob.intercept(spec)
                await until(pilot, lambda: pane.row_count == 2, timeout=WAIT)
                owners = {str(pane.get_row_at(i)[2]) for i in range(2)}
                assert owners == {"you", "bob@laptop"}

                pane.focus()
                pane.move_cursor(row=0)  # ours sort first
                await pilot.press("l")
                await until(pilot, lambda: pane.row_count == 1, timeout=WAIT)
                assert [i.spec.name for i in manager.registry.intercepts()] == ["bob-grpc"]
                assert recorder.of(m.InterceptLeft)

                await pilot.press("q")
                await until(pilot, lambda: not app.is_running, timeout=WAIT)
                bob.stop()
        tg.cancel_scope.cancel()
