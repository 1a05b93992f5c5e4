"""The TUI over real core against the real sandbox (HTTPS, RBAC, controllers, kubelet).

Covers: connecting through the kubeconfig and showing the context; a
Deployment and its Service created in the cluster appear with services:ports
and, as the kubelet starts the pod, the ready count follows live (watches,
``ClusterChanged``), with no key pressed; the namespace list counts it and
digits/`:ns` narrow to it; `:ctx` lists the kubeconfig's contexts; with no
traffic manager installed the header says it is not installed and `i`
explains in an error modal whose hint names `waylay install`, never a
traceback; quitting closes core cleanly; a context
whose cluster cannot be reached shows an error modal at start.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from kubernetes import client

from tests.sandbox.conftest import SandboxHandle
from tests.tui.conftest import SIZE, Recorder, until
from tui import messages as m
from tui.app import WaylayApp
from tui.core_source import connect_core
from tui.modals.contexts import ContextModal
from tui.modals.error import ErrorModal
from tui.source import ClusterSource
from tui.widgets.header_bar import HeaderBar
from tui.widgets.namespace_list import NamespaceList
from tui.widgets.workload_table import WorkloadTable

WAIT = 60.0


def deployment(namespace: str) -> dict[str, Any]:
    labels = {"app": "greeter"}
    container = {
        "name": "app",
        "image": "waylay/demo-http-echo:1.0",
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [{"name": "APP", "value": "greeter"}, {"name": "PORT", "value": "8080"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "greeter", "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def service(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "greeter", "namespace": namespace},
        "spec": {
            "selector": {"app": "greeter"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


@pytest.fixture
def tui_ns(sandbox: SandboxHandle) -> Iterator[str]:
    name = f"tui-{uuid.uuid4().hex[:6]}"
    api = sandbox.api_client()
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)
        api.close()


def create_greeter(sandbox: SandboxHandle, namespace: str) -> None:
    api = sandbox.api_client()
    try:
        client.AppsV1Api(api).create_namespaced_deployment(namespace, deployment(namespace))
        client.CoreV1Api(api).create_namespaced_service(namespace, service(namespace))
    finally:
        api.close()


def app_for(kubeconfig: Path, context: str) -> WaylayApp:
    async def connect() -> ClusterSource:
        return await connect_core(context=context, kubeconfig=str(kubeconfig))

    return WaylayApp(connect)


async def test_live_view_and_a_refused_intercept(
    sandbox: SandboxHandle, tui_ns: str, recorder: Recorder
) -> None:
    app = app_for(sandbox.kubeconfig, sandbox.admin_context)
    async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
        header = app.main.query_one(HeaderBar)
        await until(pilot, lambda: header.session is not None, timeout=WAIT)
        assert header.context is not None and header.context.name == sandbox.admin_context
        assert header.session is not None and not header.session.healthy  # no manager
        assert header.session.manager_missing and "not installed" in str(header.render())

        await anyio.to_thread.run_sync(create_greeter, sandbox, tui_ns)
        table = app.main.query_one(WorkloadTable)
        key = f"{tui_ns}/Deployment/greeter"
        await until(pilot, lambda: key in table.workloads, timeout=WAIT)
        assert recorder.of(m.ClusterChanged)
        await until(pilot, lambda: table.workloads[key].ready == 1, timeout=WAIT)
        row = [str(c) for c in table.get_row(key)]
        assert "greeter:80→http" in row and "1/1" in row

        names = app.main.query_one(NamespaceList)
        await until(pilot, lambda: tui_ns in [n.name for n in names.namespaces], timeout=WAIT)
        assert next(n for n in names.namespaces if n.name == tui_ns).workload_count == 1
        await pilot.press("colon", *f"ns {tui_ns}", "enter")
        await until(pilot, lambda: list(table.workloads) == [key], timeout=WAIT)

        await pilot.press("colon", *"ctx", "enter")
        assert isinstance(app.screen, ContextModal), getattr(app.screen, "text", app.screen)
        assert set(app.screen.contexts) >= {sandbox.admin_context, sandbox.developer_context}
        await pilot.press("escape")

        table.focus()
        table.move_cursor(row=0)
        await pilot.press("i")  # explains instead of opening a wizard that cannot finish
        await until(pilot, lambda: isinstance(app.screen, ErrorModal), timeout=WAIT)
        modal = app.screen
        assert isinstance(modal, ErrorModal)
        assert "traffic manager" in modal.text and "waylay install" in modal.text
        assert "Traceback" not in modal.text
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main)
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, timeout=WAIT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_cluster_shows_an_error(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "gone", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}
                ],
                "users": [{"name": "me", "user": {"token": "t"}}],
                "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "me"}}],
                "current-context": "gone",
            }
        )
    )
    app = app_for(kubeconfig, "gone")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ErrorModal), timeout=WAIT)
        assert isinstance(app.screen, ErrorModal)
        assert "Cannot reach the cluster of context 'gone'" in app.screen.text
        assert "Traceback" not in app.screen.text
