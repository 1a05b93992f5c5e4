"""End to end: the intercepted workload's environment on this machine.

Covers: `waylay intercept ... --env-file F --env-syntax S --env-json J -- CMD`
for every syntax (docker, compose, sh, csh, cmd, ps) writes the app
container's environment as the injector copied it (APP, PORT, the pod's
name and namespace) in that syntax, and the JSON beside it; the sh file
sourced by /bin/sh gives the values back; `-- CMD` runs CMD with that
environment while the intercept is live (CMD's own request reaches the local
server), passes CMD's exit code through and leaves when CMD exits; a spec
file run with `waylay run FILE` (as the developer, its context named in the
file) makes a personal intercept, runs the handler with the env (env file
and cwd relative to the spec) and leaves; `waylay spec schema` prints the JSON Schema.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.core.e2ekit import DEVELOPER, Demo, hit, local_server

USER = "env"

EXPECTED = {
    "docker": "PORT=8080",
    "compose": "PORT='8080'",
    "sh": "export PORT='8080'",
    "csh": "setenv PORT '8080'",
    "cmd": 'set "PORT=8080"',
    "ps": "$Env:PORT = '8080'",
}


@pytest.mark.parametrize("syntax", sorted(EXPECTED))
def test_env_file_every_syntax(demo: Demo, syntax: str, tmp_path: Path) -> None:
    env_file, env_json = tmp_path / f"orders.{syntax}", tmp_path / "orders.json"
    demo.waylay(
        "intercept",
        "orders",
        "-n",
        "shop",
        "--port",
        "9",
        "--http-header",
        "auto",
        "--env-file",
        str(env_file),
        "--env-syntax",
        syntax,
        "--env-json",
        str(env_json),
        "--",
        "true",
        user=USER,
    )
    env = json.loads(env_json.read_text())
    assert env["APP"] == "orders" and env["PORT"] == "8080"
    assert env["POD_NAMESPACE"] == "shop" and env["POD_NAME"].startswith("orders-")
    lines = env_file.read_text().splitlines()
    assert EXPECTED[syntax] in lines
    assert len([line for line in lines if "POD_NAME" in line and "POD_NAMESPACE" not in line]) == 1
    if syntax == "sh":
        echoed = subprocess.run(
            ["/bin/sh", "-c", f'. "{env_file}"; printf %s "$APP:$PORT:$POD_NAME"'],
            capture_output=True,
            text=True,
            timeout=10,
            env={},
        )
        assert echoed.stdout == f"orders:8080:{env['POD_NAME']}"


def test_command_runs_with_env_and_exit_code(demo: Demo, tmp_path: Path) -> None:
    server, port = local_server("cmd")
    script = (
        "import os, sys, urllib.request\n"
        "assert os.environ['APP'] == 'orders' and os.environ['PORT'] == '8080'\n"
        f"body = urllib.request.urlopen('http://{demo.orders}/', timeout=10).read()\n"
        "sys.exit(7 if body == b'local-cmd' else 3)\n"
    )
    try:
        proc = demo.waylay(
            "intercept",
            "orders",
            "-n",
            "shop",
            "--port",
            str(port),
            "--",
            sys.executable,
            "-c",
            script,
            user=USER,
            check=False,
        )
        assert proc.returncode == 7, proc.stdout + proc.stderr
        assert "Intercept 'orders-shop'" in proc.stdout
        # CMD ended: the intercept is gone and the app answers again
        status = json.loads(demo.waylay("status", "-o", "json", user=USER).stdout)
        assert all(not s["intercepts"] for s in status["daemon"]["sessions"])
        assert hit(demo.orders) == "app"
    finally:
        server.shutdown()


def test_spec_file_run(demo: Demo, tmp_path: Path) -> None:
    server, port = local_server("spec")
    handler = tmp_path / "handler.py"
    handler.write_text(
        "import json, os, sys, urllib.request\n"
        "env = dict(line.split('=', 1) for line in open('spec.env').read().splitlines())\n"
        "req = urllib.request.Request(sys.argv[1])\n"
        "req.add_header('x-waylay-intercept-id', sys.argv[2])\n"
        "tagged = urllib.request.urlopen(req, timeout=10).read()\n"
        "plain = urllib.request.urlopen(sys.argv[1], timeout=10).read()\n"
        "ok = os.environ['APP'] == env['APP'] == 'orders' and tagged == b'local-spec'\n"
        "sys.exit(5 if ok and plain != b'local-spec' else 1)\n"
    )
    spec = tmp_path / "orders.yaml"
    spec.write_text(
        f"context: {DEVELOPER}\n"
        "namespace: shop\n"
        "workloads:\n"
        "  - name: orders\n"
        "    intercepts:\n"
        "      - port: http\n"
        f"        local_port: {port}\n"
        "        headers: {x-waylay-intercept-id: spec-run}\n"
        "handler:\n"
        f"  command: [{sys.executable}, handler.py, 'http://{demo.orders}/', spec-run]\n"
        "  env_file: spec.env\n"
        "  cwd: .\n"
    )
    try:
        # run from elsewhere: env_file and cwd are relative to the spec file
        proc = demo.waylay("run", str(spec), user=USER, check=False, cwd=Path("/"))
        assert proc.returncode == 5, proc.stdout + proc.stderr
        assert "Intercept 'orders-shop'" in proc.stdout and "x-waylay-intercept-id" in proc.stdout
        assert (tmp_path / "spec.env").is_file()
        assert hit(demo.orders, "spec-run") == "app"
    finally:
        server.shutdown()


def test_spec_schema(demo: Demo) -> None:
    schema = json.loads(demo.waylay("spec", "schema", user=USER).stdout)
    assert schema["title"] == "Spec" and "workloads" in schema["required"]
    assert {"context", "namespace", "workloads", "handler"} <= set(schema["properties"])
