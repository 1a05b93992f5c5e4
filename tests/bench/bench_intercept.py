"""Benchmark: time from ``waylay intercept`` to the first request served locally.

Run with ``make bench`` (``pytest tests/bench -s``) or
``.venv/bin/python tests/bench/bench_intercept.py``. Not part of ``make test``.

On a fresh demo sandbox (``python -m sandbox start --demo``) with the manager
installed and the agent already in ``shop/orders`` (a first intercept made
and left), it measures, side by side in one run:

- baseline: open one port-forward to an ``orders`` pod and send one HTTP
  request through it (``core.kube.Kube.portforward``);
- intercept: run ``waylay intercept orders`` (a CLI process talking to the
  running daemon) and send requests to the Service until one is answered by
  the local server; the intercept is left between rounds.

It prints the medians and their ratio.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.kube import Kube  # noqa: E402

ROUNDS = 7


def _local() -> tuple[ThreadingHTTPServer, int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"local")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def _is_local(target: str) -> bool:
    with urllib.request.urlopen(f"http://{target}/", timeout=10) as reply:
        return reply.read(10) == b"local"


def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = dict(
            os.environ,
            KUBECONFIG=str(root / "sandbox" / "kubeconfig"),
            WAYLAY_DAEMON_SOCKET=str(root / "daemon" / "d.sock"),
        )
        subprocess.run(
            [sys.executable, "-m", "sandbox", "start", "--demo", "--dir", str(root / "sandbox")],
            check=True,
            capture_output=True,
            timeout=120,
        )
        waylay = [sys.executable, "-m", "core.cli"]

        def cli(*args: str) -> None:
            subprocess.run([*waylay, *args], env=env, check=True, capture_output=True, timeout=180)

        server, port = _local()
        try:
            cli("install")
            kube = Kube.from_kubeconfig(env["KUBECONFIG"])
            svc = kube.get("v1", "Service", "orders", "shop") or {}
            target = f"{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
            cli("intercept", "orders", "-n", "shop", "--port", str(port))  # agents arrive
            cli("leave", "orders-shop")
            pods, _ = kube.list("v1", "Pod", "shop", label_selector="app=orders")
            pod = pods[0]["metadata"]["name"]

            def baseline() -> float:
                started = time.perf_counter()
                with kube.portforward(pod, "shop", 8080) as pf:
                    pf.socket.sendall(b"GET / HTTP/1.0\r\nHost: orders\r\n\r\n")
                    data = b""
                    while chunk := pf.socket.recv(65536):
                        data += chunk
                assert data.startswith(b"HTTP/1."), data[:80]
                return time.perf_counter() - started

            def intercept() -> float:
                started = time.perf_counter()
                cli("intercept", "orders", "-n", "shop", "--port", str(port))
                while not _is_local(target):
                    pass
                elapsed = time.perf_counter() - started
                cli("leave", "orders-shop")
                return elapsed

            base = [baseline() for _ in range(ROUNDS)]
            icpt = [intercept() for _ in range(ROUNDS)]
            kube.close()
        finally:
            server.shutdown()
            subprocess.run([*waylay, "quit"], env=env, capture_output=True, timeout=60)
            subprocess.run(
                [sys.executable, "-m", "sandbox", "stop", "--dir", str(root / "sandbox")],
                capture_output=True,
                timeout=60,
            )
    b, i = statistics.median(base), statistics.median(icpt)
    return {"port_forward_request_s": b, "intercept_first_local_s": i, "ratio": i / b}


def test_intercept_latency() -> None:
    figures = run()
    print(
        f"\nport-forward + one request: {figures['port_forward_request_s'] * 1000:.0f} ms (median)"
        f"\nwaylay intercept -> first local response: "
        f"{figures['intercept_first_local_s'] * 1000:.0f} ms (median)"
        f"\nratio: {figures['ratio']:.1f}x"
    )
    assert figures["ratio"] > 0


if __name__ == "__main__":
    test_intercept_latency()
