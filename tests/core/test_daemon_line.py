"""The CLI's light path to the daemon.

Covers: the constants ``core.daemon_line`` and ``core.cli_session`` repeat
equal the wire models' (protocol version, auto header); the synchronous
``LineClient`` says hello to a real daemon, relays progress, carries errors
with their code, title and hint, and reports no daemon as DaemonUnavailable
(starting none when told not to); the daemon verbs (`leave` and `quit` here;
`intercept` shares their imports) load neither pydantic, anyio, yaml nor the
kubernetes client; a daemon whose major version differs is a VersionSkew.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from core import cli_session, daemon_line
from core.daemon import ContextHandle, Daemon
from core.daemon_line import LineClient
from core.errors import DaemonUnavailable, RemoteError, VersionSkew
from core.protocol import AUTO_HEADER, PROTOCOL_VERSION
from core.session import Session
from tests.core.managerkit import Agents, serve_manager
from tests.core.test_session import UrlBox


def test_repeated_constants_match() -> None:
    assert daemon_line.WIRE_VERSION == PROTOCOL_VERSION
    assert cli_session.AUTO_HEADER == AUTO_HEADER


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with anyio.create_task_group() as tg, serve_manager() as manager:
        agents = Agents(tg)

        async def factory(context: str | None, kubeconfig: str | None) -> ContextHandle:
            session = Session(
                context=context or "t", connector=UrlBox(manager.url).connect, opener=agents.open
            )

            async def workloads(namespace: str) -> list[object]:
                return []

            return ContextHandle(context or "t", "demo", session, workloads)  # type: ignore[arg-type]

        d = Daemon(path=tmp_path / "d" / "d.sock", factory=factory)
        await tg.start(d.serve)
        yield d
        if d.path.exists():
            await anyio.to_thread.run_sync(_quit, d.path)
        with anyio.fail_after(10):
            await d.stopped()
        tg.cancel_scope.cancel()


def _quit(path: Path) -> None:
    with LineClient.connect(path, start=False) as client:
        client.call("quit")


async def test_line_client_talks_to_the_daemon(daemon: Daemon) -> None:
    def body() -> tuple[int, dict[str, object], RemoteError, list[str]]:
        progress: list[str] = []
        with LineClient.connect(daemon.path, start=False) as client:
            status = client.call("status")
            with pytest.raises(RemoteError) as missing:
                client.call("leave", {"name": "nope"})
            with pytest.raises(RemoteError):
                client.call(
                    "intercept",
                    {"context": "t", "request": {"name": "orders"}},
                    progress=progress.append,
                )
            return client.daemon_pid, status, missing.value, progress

    pid, status, missing, progress = await anyio.to_thread.run_sync(body)
    assert pid == os.getpid() and status["sessions"] == []
    assert missing.to_dict()["code"] == "lookup" and "No intercept named 'nope'" in missing.title
    assert missing.hint and "waylay status" in missing.hint
    assert progress == ["looking up workloads in demo"]


def test_no_daemon(tmp_path: Path) -> None:
    with pytest.raises(DaemonUnavailable):
        LineClient.connect(tmp_path / "none" / "d.sock", start=False)
    assert not (tmp_path / "none" / "d.sock").exists()


def test_version_skew(tmp_path: Path) -> None:
    import socket
    import threading

    path = tmp_path / "old.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def old_daemon() -> None:
        conn, _ = server.accept()
        with conn:
            request = json.loads(conn.makefile("rb").readline())
            reply = {"kind": "reply", "id": request["id"], "ok": True, "result": {"version": "9.0"}}
            conn.sendall(json.dumps(reply).encode() + b"\n")

    thread = threading.Thread(target=old_daemon, daemon=True)
    thread.start()
    try:
        with pytest.raises(VersionSkew) as skew:
            LineClient.connect(path, start=False)
        assert "9.0" in skew.value.title
    finally:
        thread.join(5)
        server.close()


def test_daemon_verbs_stay_light(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from core.cli import main\n"
        "codes = [main(['leave', 'x']), main(['quit'])]\n"
        "heavy = ('pydantic', 'anyio', 'kubernetes', 'yaml')\n"
        "print(codes, sorted(m for m in heavy if m in sys.modules))\n"
    )
    env = dict(os.environ, WAYLAY_DAEMON_SOCKET=str(tmp_path / "no" / "d.sock"))
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.splitlines()[-1] == "[1, 0] []", out.stdout + out.stderr
    assert "No intercept named 'x'" in out.stderr and "not running" in out.stdout
