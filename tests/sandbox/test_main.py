"""``python -m sandbox start|status|stop`` as a user runs it.

Covers: ``start --demo`` runs in the background, waits until healthy and
prints ``export KUBECONFIG=DIR/kubeconfig``; the kubeconfig has the
``sandbox-admin`` (current) and ``sandbox-developer`` contexts and works with
the real client over TLS; the demo Deployment's pods run as local processes;
``status`` reports it; ``stop`` leaves no process behind (server or pod);
``status`` afterwards says it is not running; a second ``start`` brings the
objects back (same uid and resourceVersion) from ``DIR/state.json``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from kubernetes import client, config

from tests.sandbox.helpers import wait_for


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def _processes_under(directory: Path) -> list[int]:
    """Pids whose working directory lies inside ``directory`` (the pods' processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(directory)):
            found.append(int(entry.name))
    return found


def test_start_status_stop(tmp_path: Path) -> None:
    directory = tmp_path / "box"
    started = _run("start", "--dir", str(directory), "--demo", cwd=tmp_path)
    try:
        assert started.returncode == 0, started.stderr
        kubeconfig = directory / "kubeconfig"
        assert f"export KUBECONFIG={kubeconfig}" in started.stdout

        data = yaml.safe_load(kubeconfig.read_text())
        assert data["current-context"] == "sandbox-admin"
        assert {c["name"] for c in data["contexts"]} == {"sandbox-admin", "sandbox-developer"}

        status = _run("status", "--dir", str(directory), cwd=tmp_path)
        assert status.returncode == 0 and "healthy" in status.stdout

        api = config.new_client_from_config(config_file=str(kubeconfig))
        core = client.CoreV1Api(api)

        def demo_running() -> bool:
            pods = core.list_pod_for_all_namespaces().items
            return any(p.status.phase == "Running" for p in pods)

        wait_for(demo_running, timeout=60, what="demo pods running")
        kept = core.create_namespaced_config_map(
            "default", {"metadata": {"name": "kept"}, "data": {"a": "1"}}
        )
        api.close()
        assert _processes_under(directory)
        server_pid = int(yaml.safe_load((directory / "server.json").read_text())["pid"])
    finally:
        stopped = _run("stop", "--dir", str(directory), cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    wait_for(lambda: not _processes_under(directory), timeout=20, what="no process left")
    assert not Path(f"/proc/{server_pid}").exists()
    after = _run("status", "--dir", str(directory), cwd=tmp_path)
    assert after.returncode == 1 and "no sandbox running" in after.stdout

    restarted = _run("start", "--dir", str(directory), cwd=tmp_path)
    try:
        assert restarted.returncode == 0, restarted.stderr
        api = config.new_client_from_config(config_file=str(directory / "kubeconfig"))
        again = client.CoreV1Api(api).read_namespaced_config_map("kept", "default")
        assert again.metadata.uid == kept.metadata.uid
        assert again.metadata.resource_version == kept.metadata.resource_version
        api.close()
    finally:
        assert _run("stop", "--dir", str(directory), cwd=tmp_path).returncode == 0
    wait_for(lambda: not _processes_under(directory), timeout=20, what="no process left")
