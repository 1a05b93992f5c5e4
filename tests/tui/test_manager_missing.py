"""A cluster without the traffic manager is a calm state, not a bug (through the daemon).

Real pieces: the sandbox API server, ``core.daemon`` serving its Unix socket
with its production context factory, and ``DaemonSource`` — what `make demo`
runs before `waylay install`.

Covers: the header says the manager is not installed and names `waylay
install`; while the source keeps retrying (each retry closes and replaces
the daemon connection) and cluster changes reload the views, no "something
unexpected" modal ever appears (the closed-connection race that once showed
``ClosedResourceError``; also made deterministic: a view calling through
a closed connection gets ``DaemonUnavailable`` and the header an unhealthy
session, never anyio's error); `i` on a workload explains instead of opening the
wizard: an error modal whose title says the manager is not running and
whose hint says how to install it; `esc` returns to the main view.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import anyio
import pytest
from kubernetes import client

from core.daemon import Daemon
from core.daemon_client import DaemonClient
from core.errors import DaemonUnavailable
from tests.sandbox.conftest import SandboxHandle
from tests.tui.conftest import SIZE, Recorder, until
from tests.tui.test_against_sandbox import create_greeter
from tui import messages as m
from tui.app import WaylayApp
from tui.daemon_source import DaemonSource, connect_daemon
from tui.modals.error import ErrorModal
from tui.source import ClusterSource
from tui.widgets.header_bar import HeaderBar
from tui.widgets.workload_table import WorkloadTable

WAIT = 60.0


def make_namespace(sandbox: SandboxHandle, name: str, *, delete: bool = False) -> None:
    api = sandbox.api_client()
    try:
        core = client.CoreV1Api(api)
        if delete:
            core.delete_namespace(name)
        else:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    finally:
        api.close()


async def test_not_installed_reads_calmly(
    sandbox: SandboxHandle, tmp_path: Path, recorder: Recorder
) -> None:
    namespace = f"nomgr-{uuid.uuid4().hex[:6]}"
    sources: list[DaemonSource] = []
    async with anyio.create_task_group() as tg:
        daemon = Daemon(path=tmp_path / "run" / "d.sock")
        await tg.start(daemon.serve)

        async def connect() -> ClusterSource:
            source = await connect_daemon(
                context=sandbox.admin_context,
                kubeconfig=str(sandbox.kubeconfig),
                socket=daemon.path,
            )
            sources.append(source)
            return source

        app = WaylayApp(connect)
        try:
            async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
                header = app.main.query_one(HeaderBar)
                await until(pilot, lambda: header.session is not None, timeout=WAIT)
                session = header.session
                assert session is not None and session.manager_missing
                assert not session.healthy
                shown = str(header.render())
                assert "not installed" in shown and "waylay install" in shown
                assert "unreachable" not in shown

                # retries replace the daemon connection while the views reload
                await anyio.to_thread.run_sync(make_namespace, sandbox, namespace)
                await anyio.to_thread.run_sync(create_greeter, sandbox, namespace)
                start = sources[0].attempts
                await until(pilot, lambda: sources[0].attempts >= start + 2, timeout=WAIT)
                assert len(recorder.of(m.ClusterChanged)) >= 1
                assert not isinstance(app.screen, ErrorModal), getattr(app.screen, "text", "")

                table = app.main.query_one(WorkloadTable)
                await until(pilot, lambda: bool(table.workloads), timeout=WAIT)
                table.focus()
                table.move_cursor(row=0)
                await pilot.press("i")
                await until(pilot, lambda: isinstance(app.screen, ErrorModal), timeout=WAIT)
                modal = app.screen
                assert isinstance(modal, ErrorModal)
                assert "traffic manager is not running" in modal.text
                assert "waylay install" in modal.text
                assert "bug" not in modal.text and "Traceback" not in modal.text
                await pilot.press("escape")
                await until(pilot, lambda: app.screen is app.main)
                await pilot.press("q")
                await until(pilot, lambda: not app.is_running, timeout=WAIT)
        finally:
            with contextlib.suppress(client.ApiException):
                await anyio.to_thread.run_sync(
                    lambda: make_namespace(sandbox, namespace, delete=True)
                )
            tg.cancel_scope.cancel()


async def test_a_connection_closed_under_a_view_is_not_a_bug(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    """The race behind the old "ClosedResourceError" modal, made deterministic."""
    async with anyio.create_task_group() as tg:
        daemon = Daemon(path=tmp_path / "run" / "d.sock")
        await tg.start(daemon.serve)
        source = await connect_daemon(
            context=sandbox.admin_context, kubeconfig=str(sandbox.kubeconfig), socket=daemon.path
        )
        try:
            closed = await DaemonClient.connect(daemon.path, start=False)
            await closed.aclose()  # what run() does on each retry
            source.client = closed
            source._attempted.set()  # as run() does after its first try
            with pytest.raises(DaemonUnavailable):
                await source.intercepts()
            session = await source.session()
            assert not session.healthy and isinstance(session.problem, DaemonUnavailable)
        finally:
            await source.close(keep_intercepts=True)
            tg.cancel_scope.cancel()
