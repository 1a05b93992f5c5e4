"""The `waylay` command line.

Covers: `list` (table, -A, -o json) and `namespaces` against a real API
server; `contexts` lists and switches; `status` reports reachability (exit 1
when unreachable) and the daemon; errors print title and hint with exit 1
and no traceback (no kubeconfig, RBAC denial, unknown workload via the
daemon); `spec schema` and `spec check`; `intercept` through a running
daemon prints the intercept, writes --env-file in the chosen syntax, runs
`-- CMD` with the workload's env and leaves when it exits; `leave`; `quit`;
`run FILE` makes the spec's intercepts, writes the handler's env file, runs
the handler with the env and leaves when it exits.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from core.cli import main
from core.daemon import ContextHandle, Daemon
from core.daemon_client import DaemonClient
from core.models import WorkloadInfo
from core.session import Session
from tests.core import objects as o
from tests.core.apiserver import SandboxApi, write_kubeconfig
from tests.core.managerkit import Agents, Manager, serve_manager
from tests.core.test_daemon import ORDERS
from tests.core.test_session import UrlBox


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await anyio.to_thread.run_sync(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_list_namespaces_contexts(
    api: SandboxApi, capsys: pytest.CaptureFixture[str]
) -> None:
    await api.create("deployments.apps", o.workload("Deployment", "orders"))
    await api.create("services", o.service("orders", "orders"))
    await api.create("deployments.apps", o.workload("Deployment", "elsewhere", "other"))
    kc = ["--kubeconfig", str(api.kubeconfig)]
    code, out, _ = await _cli(capsys, "list", *kc)
    assert code == 0
    assert out.splitlines()[0].split() == [
        "NAMESPACE",
        "NAME",
        "KIND",
        "READY",
        "SERVICES",
        "AGENT",
        "INTERCEPTED",
    ]
    assert "orders" in out and "elsewhere" not in out
    code, out, _ = await _cli(capsys, "list", "-A", "-o", "json", *kc)
    assert sorted(w["name"] for w in json.loads(out)) == ["elsewhere", "orders"]
    code, out, _ = await _cli(capsys, "namespaces", *kc)
    assert "demo" in out and "other" in out
    code, out, _ = await _cli(capsys, "contexts", *kc)
    assert "* " in out and "developer" in out
    code, out, _ = await _cli(capsys, "contexts", "developer", *kc)
    assert code == 0 and "Switched to context 'developer'" in out
    code, out, _ = await _cli(capsys, "contexts", "-o", "yaml", *kc)
    assert "current: developer" in out


async def test_errors_read_well(
    api: SandboxApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = await _cli(capsys, "list", "--kubeconfig", str(tmp_path / "none"))
    assert code == 1
    assert err.startswith("Error: No kubeconfig found") and "→" in err and "Traceback" not in err
    code, _, err = await _cli(
        capsys, "list", "-A", "--kubeconfig", str(api.kubeconfig), "--context", "limited"
    )
    assert code == 0  # limited users get their namespace instead of a failure
    code, _, err = await _cli(
        capsys, "list", "-n", "other", "--kubeconfig", str(api.kubeconfig), "--context", "limited"
    )
    assert code == 1 and "Not allowed to list deployments.apps in namespace 'other'" in err
    code, _, err = await _cli(capsys, "list", "-o", "json", "--kubeconfig", str(tmp_path / "none"))
    assert code == 1 and json.loads(err)["error"]["code"] == "no-kubeconfig"


async def test_status_and_spec(
    api: SandboxApi,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WAYLAY_DAEMON_SOCKET", str(tmp_path / "nodaemon" / "d.sock"))
    code, out, _ = await _cli(capsys, "status", "--kubeconfig", str(api.kubeconfig))
    assert code == 0 and "reachable" in out and "Daemon:    not running" in out
    dead = write_kubeconfig(tmp_path / "dead", "http://127.0.0.1:9", {"admin": "t"})
    code, out, _ = await _cli(capsys, "status", "--kubeconfig", str(dead))
    assert code == 1 and "UNREACHABLE" in out
    code, out, _ = await _cli(capsys, "spec", "schema")
    assert json.loads(out)["title"] == "Spec"
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "workloads:\n  - name: orders\n    intercepts:\n"
        "      - port: http\n        local_port: 70000\n"
    )
    code, _, err = await _cli(capsys, "spec", "check", str(spec))
    assert code == 1 and f"{spec}:5:" in err
    code, out, err = await _cli(capsys, "quit")
    assert code == 0 and "not running" in out


@pytest.fixture
async def daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Daemon, Manager]]:
    from core.protocol import AgentHello

    path = tmp_path / "d" / "d.sock"
    monkeypatch.setenv("WAYLAY_DAEMON_SOCKET", str(path))
    async with anyio.create_task_group() as tg, serve_manager() as manager:
        manager.registry.register_agent(
            AgentHello(
                pod="orders-a",
                namespace="demo",
                pod_ip="127.0.0.1",
                workload_kind="Deployment",
                workload_name="orders",
                ports=[],
                tunnel_port=7777,
                env={"GREETING": "it's here"},
            )
        )
        agents = Agents(tg)

        async def factory(context: str | None, kubeconfig: str | None) -> ContextHandle:
            session = Session(
                context=context or "t", connector=UrlBox(manager.url).connect, opener=agents.open
            )

            async def workloads(namespace: str) -> list[WorkloadInfo]:
                return [ORDERS] if namespace == "demo" else []

            return ContextHandle(context or "t", "demo", session, workloads)

        d = Daemon(path=path, factory=factory)
        await tg.start(d.serve)
        yield d, manager
        if path.exists():  # stop it the way users do: sessions end cleanly
            with contextlib.suppress(Exception):
                async with await DaemonClient.connect(path, start=False) as client:
                    await client.call("quit")
        with anyio.fail_after(10):
            await d.stopped()
        tg.cancel_scope.cancel()


async def test_intercept_env_cmd_leave_quit(
    api: SandboxApi,
    daemon: tuple[Daemon, Manager],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    _, manager = daemon
    kc = ["--kubeconfig", str(api.kubeconfig)]
    env_file = tmp_path / "orders.env"
    code, out, err = await _cli(
        capsys,
        "intercept",
        "orders",
        "--port",
        "1:http",
        "--env-file",
        str(env_file),
        "--env-syntax",
        "sh",
        *kc,
    )
    assert code == 0, err
    assert "Intercept 'orders-demo'" in out and "global" in out
    assert "Warning: Nothing listens on 127.0.0.1:1" in err
    assert env_file.read_text() == "export GREETING='it'\\''s here'\n"
    assert [i.spec.name for i in manager.registry.intercepts()] == ["orders-demo"]
    code, out, _ = await _cli(capsys, "status", "-o", "json", *kc)
    [session] = json.loads(out)["daemon"]["sessions"]
    assert [i["spec"]["name"] for i in session["intercepts"]] == ["orders-demo"]
    code, out, _ = await _cli(capsys, "leave", "orders-demo", *kc)
    assert code == 0 and "Left intercept 'orders-demo'" in out
    assert manager.registry.intercepts() == []
    code, _, err = await _cli(capsys, "intercept", "ordrs", *kc)
    assert code == 1 and "No workload named 'ordrs'" in err and "Did you mean 'orders'" in err
    # -- CMD runs with the env and the intercept is left when it exits
    marker = tmp_path / "seen"
    code, out, err = await _cli(
        capsys,
        "intercept",
        "mine",
        "--workload",
        "orders",
        "--port",
        "2",
        "--http-header",
        "auto",
        *kc,
        "--",
        sys.executable,
        "-c",
        f"import os, pathlib; pathlib.Path({str(marker)!r}).write_text(os.environ['GREETING'])",
    )
    assert code == 0, err
    assert "x-waylay-intercept-id: " in out
    assert marker.read_text() == "it's here"
    assert manager.registry.intercepts() == []
    code, out, _ = await _cli(capsys, "quit")
    assert code == 0 and "stopped" in out


def test_no_traceback_on_unexpected_input(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", "list", "--kubeconfig", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "Error:" in proc.stderr


async def test_run_spec_file(
    api: SandboxApi,
    daemon: tuple[Daemon, Manager],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    _, manager = daemon
    seen = tmp_path / "seen"
    env_file = tmp_path / "h.env"
    handler = f"import os, pathlib; pathlib.Path({str(seen)!r}).write_text(os.environ['GREETING'])"
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "namespace: demo\n"
        "workloads:\n"
        "  - name: orders\n"
        "    intercepts:\n"
        "      - port: http\n"
        "        local_port: 3\n"
        "        headers: {x-user: alice}\n"
        "handler:\n"
        f"  command: [{json.dumps(sys.executable)}, -c, {json.dumps(handler)}]\n"
        f"  env_file: {json.dumps(str(env_file))}\n"
        "  env_syntax: docker\n"
    )
    code, out, err = await _cli(capsys, "run", str(spec), "--kubeconfig", str(api.kubeconfig))
    assert code == 0, err
    assert "Intercept 'orders-demo'" in out and "x-user: alice" in out
    assert seen.read_text() == "it's here"
    assert env_file.read_text() == "GREETING=it's here\n"
    assert manager.registry.intercepts() == []  # left when the handler exited
