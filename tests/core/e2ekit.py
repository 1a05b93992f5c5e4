"""Helpers for the end-to-end tests: a demo sandbox, the `waylay` CLI as a
real process, local servers and requests through the sandbox's Services."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from core.kube import Kube

WAYLAY = [sys.executable, "-m", "core.cli"]
DEVELOPER = "sandbox-developer"
"""The demo's read-only (+ port-forward) context."""


@dataclass
class Demo:
    dir: Path
    env: dict[str, str]
    orders: str
    """``ip:port`` of the orders Service."""

    def socket(self, user: str) -> Path:
        return self.dir / f"daemon-{user}" / "d.sock"

    def user_env(self, user: str, **extra: str) -> dict[str, str]:
        return dict(self.env, WAYLAY_DAEMON_SOCKET=str(self.socket(user)), **extra)

    def waylay(
        self,
        *args: str,
        user: str = "a",
        check: bool = True,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*WAYLAY, *args],
            env=self.user_env(user, **(env or {})),
            capture_output=True,
            text=True,
            timeout=180,
            cwd=cwd,
        )
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def service(self, name: str, port_name: str, namespace: str = "shop") -> str:
        """``ip:port`` of a Service's port."""
        kube = Kube.from_kubeconfig(self.env["KUBECONFIG"])
        try:
            svc = kube.get("v1", "Service", name, namespace)
        finally:
            kube.close()
        assert svc is not None, f"the demo has no {namespace}/{name} Service"
        [port] = [p["port"] for p in svc["spec"]["ports"] if p["name"] == port_name]
        return f"{svc['spec']['clusterIP']}:{port}"


@contextmanager
def demo_sandbox(root: Path) -> Iterator[Demo]:
    """A fresh `python -m sandbox start --demo` with the manager installed (admin)."""
    env = dict(os.environ, KUBECONFIG=str(root / "sandbox" / "kubeconfig"))
    env.pop("WAYLAY_API_KEY", None)
    subprocess.run(
        [sys.executable, "-m", "sandbox", "start", "--demo", "--dir", str(root / "sandbox")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        box = Demo(root, env, "")
        box.orders = box.service("orders", "http")
        box.waylay("install")
        yield box
    finally:
        for sock in root.glob("daemon-*/d.sock"):
            subprocess.run(
                [*WAYLAY, "quit"],
                env=dict(env, WAYLAY_DAEMON_SOCKET=str(sock)),
                capture_output=True,
                timeout=60,
            )
        subprocess.run(
            [sys.executable, "-m", "sandbox", "stop", "--dir", str(root / "sandbox")],
            capture_output=True,
            timeout=60,
        )


def local_server(name: str) -> tuple[ThreadingHTTPServer, int]:
    """An HTTP server on 127.0.0.1 answering ``local-<name>`` (and the path) to every GET."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"local-{name}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@contextmanager
def tcp_server(reply: bytes) -> Iterator[int]:
    """A TCP server on 127.0.0.1 that sends ``reply`` to each connection and closes it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(reply)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def hit(
    target: str, header: str | None = None, path: str = "/", headers: dict[str, str] | None = None
) -> str:
    """``local-<name>`` when a local server answered, else ``app``. ``header``: the
    value of ``x-waylay-intercept-id``."""
    req = urllib.request.Request(f"http://{target}{path}", headers=headers or {})
    if header:
        req.add_header("x-waylay-intercept-id", header)
    try:
        with urllib.request.urlopen(req, timeout=10) as reply:
            body = reply.read(300).decode(errors="replace")
    except urllib.error.HTTPError as err:  # an answer all the same (the app's 404s)
        body = err.read(300).decode(errors="replace")
    return body if body.startswith("local-") else "app"


def tcp_read(target: str) -> bytes:
    """The first bytes a TCP Service sends on a fresh connection."""
    host, _, port = target.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"hello\n")
        return conn.recv(100)


def eventually(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{what} within {within:g}s"
        time.sleep(0.1)
