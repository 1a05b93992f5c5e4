"""The traffic pane's `a` over real core, a real manager, a real agent and real tunnels.

The cluster is the sandbox API server; the manager is the real client API; the
agent is a real ``agent.app.Agent`` in front of a real HTTP app, holding the
personal intercept our session created; the session reaches the agent's real
tunnel port over TCP (the port-forward replaced by a direct connection).

Covers: with the pane showing ours, a request that matched no intercept does
not appear while ours does; `a` makes the session watch all (the agent sees a
watcher) and the title says so; the next unmatched request appears as
"→ app" and its detail says why it missed; `a` again stops watching (the
agent's watcher goes away) and the title is back to "mine".
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc

from core.protocol import InterceptSpec
from core.session import watcher_id
from tests.core.apiserver import serve_api
from tests.core.managerkit import serve_manager
from tests.core.test_watch_all import agent_for, get, http_server
from tests.tui.conftest import SIZE, Recorder, until
from tests.tui.test_intercept_real_core import populate
from tui.app import WaylayApp
from tui.core_source import CoreSource, connect_core
from tui.modals.traffic_detail import TrafficDetailModal, describe
from tui.source import ClusterSource
from tui.widgets.header_bar import HeaderBar
from tui.widgets.traffic_log import TrafficLog

WAIT = 30.0


async def test_a_shows_unmatched_requests_and_why(tmp_path: Path, recorder: Recorder) -> None:
    async with (
        serve_api(tmp_path) as api,
        http_server("app") as app_port,
        http_server("workstation") as local_port,
        anyio.create_task_group() as tg,
    ):
        await populate(api)
        agent = agent_for(app_port, namespace="demo", workload="orders", pod="orders-a")
        await tg.start(lambda task_status: agent.run(manager=False, task_status=task_status))
        http_port = agent.listeners[0].address[1]
        tunnel_host, tunnel_port = agent.tunnels.address

        async def opener(pod: str, namespace: str, port: int) -> anyio.abc.ByteStream:
            return await anyio.connect_tcp(tunnel_host, tunnel_port)

        async with serve_manager() as manager:
            manager.add_agent("orders-a")

            @contextlib.asynccontextmanager
            async def to_manager() -> AsyncIterator[str]:
                yield manager.url

            sources: list[CoreSource] = []

            async def connect() -> ClusterSource:
                source = await connect_core(
                    context="admin", kubeconfig=str(api.kubeconfig),
                    connector=to_manager, opener=opener,
                )  # fmt: skip
                sources.append(source)
                return source

            app = WaylayApp(connect)
            async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
                header = app.main.query_one(HeaderBar)
                await until(pilot, lambda: header.session and header.session.healthy, timeout=WAIT)
                source = sources[0]
                spec = InterceptSpec(
                    name="mine", namespace="demo", workload="orders", service="orders",
                    service_port=80, mechanism="http", headers={"x-dev": "alice"},
                    local_port=local_port,
                )  # fmt: skip
                outcome = await source.intercept(spec, None, lambda _text: None)
                agent.apply(manager.registry.intercepts())  # what the manager pushes to agents
                session_id = outcome.intercept.session_id
                log = app.main.query_one(TrafficLog)

                await get(http_port, "/missed-1", {"x-dev": "carol"})
                await get(http_port, "/mine-1", {"x-dev": "alice"})
                await until(pilot, lambda: log.row_count == 1, timeout=WAIT)
                assert log.get_row_at(0)[3] == "/mine-1"
                assert "(mine)" in str(log.border_title)

                log.focus()
                await pilot.press("a")
                assert "(all through the agents)" in str(log.border_title)
                await until(
                    pilot,
                    lambda: agent.sessions.live(watcher_id(session_id)) is not None,
                    timeout=WAIT,
                )
                await get(http_port, "/missed-2", {"x-dev": "carol"})
                await until(pilot, lambda: log.row_count == 2, timeout=WAIT)
                row = log.get_row_at(1)
                assert (row[3], str(row[7])) == ("/missed-2", "→ app")
                log.move_cursor(row=1)
                await pilot.press("enter")
                assert isinstance(app.screen, TrafficDetailModal)
                why = dict(describe(app.screen.event))["why"]
                assert "x-dev" in why and "carol" in why
                await pilot.press("escape")
                await until(pilot, lambda: app.screen is app.main)

                log.focus()
                await pilot.press("a")
                assert "(mine)" in str(log.border_title)
                await until(pilot, lambda: not agent.sessions.watched, timeout=WAIT)
                paths = lambda: [log.get_row_at(i)[3] for i in range(log.row_count)]  # noqa: E731
                with anyio.fail_after(WAIT):  # the new feed subscribes in the background
                    while "/mine-3" not in paths():
                        await get(http_port, "/missed-3", {"x-dev": "carol"})
                        await get(http_port, "/mine-3", {"x-dev": "alice"})
                        await pilot.pause(0.1)
                assert "/missed-3" not in paths()
                await source.leave("mine")
            await source.close(keep_intercepts=False)
        tg.cancel_scope.cancel()
