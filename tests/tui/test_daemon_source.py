"""The TUI attached to the per-user daemon: intercepts shared with the CLI, kept on quit.

Real pieces: the sandbox API server (discovery over HTTP), ``core.daemon``
serving its Unix socket, the real manager client API, real agent tunnel ends
(``tests.core.managerkit``); only port-forwards are replaced by direct
connections, as core's daemon tests do.

Covers: an intercept made with the wizard goes through the daemon (progress
lines relayed, the "nothing listening" warning shown in the result); one made
by another daemon client (what `waylay intercept` does) appears in the TUI as
ours, live, and `l` leaves it; `e` writes the env file the daemon reads from
the agent; a
traffic push reaches the traffic pane; `q` offers to keep the intercepts and
`k` leaves them running in the daemon (the manager still has them); `r` on
another user's intercept, confirmed, revokes it at the manager; the
translation of a spec into `waylay intercept` flags.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from core.daemon import ContextHandle, Daemon
from core.daemon_client import DaemonClient
from core.discovery import snapshot_workloads
from core.kube import Kube
from core.models import WorkloadInfo
from core.preview import PreviewTarget
from core.protocol import AUTO_HEADER, AgentHello, InterceptSpec, PathRule, TrafficEvent
from core.session import Session
from tests.core import objects as o
from tests.core.apiserver import serve_api
from tests.core.managerkit import Agents, serve_manager
from tests.tui.conftest import SIZE, Recorder, until
from tui import messages as m
from tui.app import WaylayApp
from tui.daemon_source import connect_daemon, intercept_request
from tui.modals.confirm import ConfirmModal
from tui.modals.quit import QuitModal
from tui.screens.wizard import WizardScreen
from tui.source import ClusterSource
from tui.widgets.intercepts_pane import InterceptsPane
from tui.widgets.traffic_log import TrafficLog
from tui.widgets.workload_table import WorkloadTable

WAIT = 30.0


def test_spec_becomes_cli_flags() -> None:
    spec = InterceptSpec(
        name="orders-demo", namespace="demo", workload="orders", service="orders",
        service_port=80, service_port_name="http", mechanism="http",
        headers={AUTO_HEADER: "s:orders-demo", "x-team": "blue"},
        path=PathRule(kind="prefix", value="/api"), local_port=9000,
    )  # fmt: skip
    target = PreviewTarget(host="ingress.ingress", port=443, tls=True, hostname="shop.test")
    request = intercept_request(spec, target)
    assert request["name"] == "orders" and request["port"] == "9000:http"
    assert request["http_header"] == ["auto", "x-team=blue"]
    assert request["http_path_prefix"] == "/api"
    assert (request["ingress_host"], request["ingress_port"], request["ingress_tls"]) == (
        "ingress.ingress", 443, True,
    )  # fmt: skip
    assert intercept_request(spec, None)["preview_url"] is False


async def test_wizard_through_the_daemon_shared_and_kept(
    tmp_path: Path, recorder: Recorder
) -> None:
    async with anyio.create_task_group() as tg, serve_api(tmp_path) as api:
        orders = await api.create(
            "deployments.apps", o.workload("Deployment", "orders", agent_config=True)
        )
        rs = await api.create(
            "replicasets.apps", o.workload("ReplicaSet", "orders-1", owner=orders)
        )
        await api.create("pods", o.pod("orders-a", rs, agent=True))
        await api.create("services", o.service("orders", "orders", ports=[
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "grpc", "port": 9090, "targetPort": 9090},
        ]))  # fmt: skip
        async with serve_manager() as manager:
            manager.registry.register_agent(
                AgentHello(
                    pod="orders-a", namespace="demo", pod_ip="127.0.0.1",
                    workload_kind="Deployment", workload_name="orders", ports=[],
                    tunnel_port=7777, env={"DB_URL": "postgres://db"},
                )
            )  # fmt: skip
            agents = Agents(tg)

            @contextlib.asynccontextmanager
            async def to_manager() -> AsyncIterator[str]:
                yield manager.url

            async def factory(context: str | None, kubeconfig: str | None) -> ContextHandle:
                kube = await anyio.to_thread.run_sync(Kube.from_kubeconfig, kubeconfig, context)
                session = Session(context=kube.context.name, connector=to_manager,
                                  opener=agents.open)  # fmt: skip

                async def workloads(namespace: str) -> list[WorkloadInfo]:
                    return await anyio.to_thread.run_sync(snapshot_workloads, kube, namespace)

                return ContextHandle(kube.context.name, "demo", session, workloads, kube.close)

            daemon = Daemon(path=tmp_path / "run" / "d.sock", factory=factory)
            await tg.start(daemon.serve)

            async def connect() -> ClusterSource:
                return await connect_daemon(
                    context="admin", kubeconfig=str(api.kubeconfig), socket=daemon.path,
                    connector=to_manager,
                )  # fmt: skip

            app = WaylayApp(connect)
            app.env_dir = tmp_path
            async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
                main = app.main
                await until(pilot, lambda: main.session and main.session.healthy, timeout=WAIT)
                table = main.query_one(WorkloadTable)
                key = "demo/Deployment/orders"
                await until(pilot, lambda: key in table.workloads, timeout=WAIT)
                table.move_cursor(row=table.get_row_index(key))
                await pilot.press("i")
                await until(pilot, lambda: isinstance(app.screen, WizardScreen))
                wizard = app.screen
                assert isinstance(wizard, WizardScreen)
                await pilot.press("enter", "ctrl+u", *"45999", "enter", "enter")  # http, global
                await until(pilot, lambda: wizard.phase == "done", timeout=WAIT)
                texts = [p.text for p in recorder.of(m.InterceptProgress)]  # type: ignore[attr-defined]
                assert any("looking up workloads" in t for t in texts)
                assert wizard.outcome is not None
                assert any("45999" in w for w in wizard.outcome.warnings)  # nothing listens
                await pilot.press("enter")

                pane = main.query_one(InterceptsPane)
                await until(pilot, lambda: pane.row_count == 1, timeout=WAIT)
                cli = await DaemonClient.connect(daemon.path, start=False)
                await cli.call("intercept", {
                    "context": "admin", "kubeconfig": app.source.kubeconfig,  # type: ignore[union-attr]
                    "request": {"name": "orders-grpc", "workload": "orders", "namespace": "demo",
                                "port": "45998:grpc"},
                })  # fmt: skip
                await cli.aclose()
                await until(pilot, lambda: len(pane.mine) == 2, timeout=WAIT)

                ours = wizard.outcome.intercept.id
                agents.tunnels["orders-a"].push(
                    TrafficEvent(pod="orders-a", intercept=ours, method="GET", path="/x")
                )
                log = main.query_one(TrafficLog)
                await until(pilot, lambda: log.row_count == 1, timeout=WAIT)

                pane.focus()
                grpc = pane.get_row_index(f"{ours.split(':')[0]}:orders-grpc")
                pane.move_cursor(row=grpc)
                await pilot.press("e")
                env_file = tmp_path / "orders-grpc.env"
                await until(pilot, env_file.exists, timeout=WAIT)
                assert "DB_URL=postgres://db" in env_file.read_text()
                await pilot.press("l")  # what the CLI made, left from the TUI
                await until(pilot, lambda: pane.row_count == 1, timeout=WAIT)

                bob = Session(context="admin", connector=to_manager, opener=agents.open,
                              name="bob@laptop")  # fmt: skip
                await tg.start(bob.run)
                await bob.intercept(InterceptSpec(
                    name="bob", namespace="demo", workload="orders", service="orders",
                    service_port=9090, service_port_name="grpc", local_port=45997,
                ))  # fmt: skip
                await until(pilot, lambda: pane.row_count == 2, timeout=WAIT)
                pane.move_cursor(row=1)  # others' sort last
                assert str(pane.get_row_at(1)[2]) == "bob@laptop"
                await pilot.press("r")
                assert isinstance(app.screen, ConfirmModal)
                await pilot.press("y")
                await until(pilot, lambda: pane.row_count == 1, timeout=WAIT)
                assert "bob" not in [i.spec.name for i in manager.registry.intercepts()]
                bob.stop()

                await pilot.press("q")
                assert isinstance(app.screen, QuitModal) and app.screen.can_keep
                await pilot.press("k")
                await until(pilot, lambda: not app.is_running, timeout=WAIT)
            assert [i.id for i in manager.registry.intercepts()] == [ours]  # kept in the daemon
            quitter = await DaemonClient.connect(daemon.path, start=False)
            await quitter.call("quit")
            await quitter.aclose()
        tg.cancel_scope.cancel()
