"""What `waylay demo` runs on the workstation around the TUI.

- ``WorkstationServer``: a small HTTP server on 127.0.0.1 (port 8080 when
  free) standing in for the developer's own process, so an intercept of the
  demo's ``orders`` lands somewhere visible. Each reply names the request and
  says it was served on this machine. It runs in a thread of the `waylay
  demo` process and so lives exactly as long as the TUI does.
- ``install_manager``: puts the traffic manager into the demo cluster
  (idempotent: a second run upgrades in place), saying each step.
- ``stop_idle_daemon``: the demo's own daemon is stopped on exit unless the
  user chose to keep intercepts running in it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from core.errors import DaemonUnavailable, WaylayError

__all__ = ["PREFERRED_PORT", "WorkstationServer", "install_manager", "stop_idle_daemon"]

PREFERRED_PORT = 8080
"""The demo apps' own port, so the wizard's default needs no change."""
INTERCEPT_HEADER = "x-waylay-intercept-id"


def reply_text(method: str, path: str, port: int, intercept_id: str | None) -> str:
    """What the workstation server answers: the request, and where it was served."""
    lines = [
        f"{method} {path} was served on your machine",
        f"  by the waylay demo's workstation server at 127.0.0.1:{port},",
        "  not by the app in the cluster: your intercept works.",
    ]
    if intercept_id:
        lines.append(f"  (matched personal intercept {intercept_id})")
    return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server_version = "waylay-demo-workstation"
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        port = self.connection.getsockname()[1]
        body = reply_text(self.command, self.path, int(port), self.headers.get(INTERCEPT_HEADER))
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _answer

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the TUI owns the terminal (its traffic pane shows the requests)."""


def _bind(host: str, preferred: int) -> ThreadingHTTPServer:
    try:
        return ThreadingHTTPServer((host, preferred), _Handler)
    except OSError:
        return ThreadingHTTPServer((host, 0), _Handler)


class WorkstationServer:
    """``with WorkstationServer() as server: ... server.port``; stops on exit."""

    def __init__(self, host: str = "127.0.0.1", preferred_port: int = PREFERRED_PORT) -> None:
        ThreadingHTTPServer.allow_reuse_address = True
        ThreadingHTTPServer.daemon_threads = True
        self._server = _bind(host, preferred_port)
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="demo-workstation", daemon=True
        )

    def __enter__(self) -> WorkstationServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def install_manager(kubeconfig: str, say: Callable[[str], None]) -> bool:
    """Install (or upgrade in place) the traffic manager; True when it was already there."""
    from core.install import InstallOptions, install
    from core.kube import Kube

    kube = Kube.from_kubeconfig(kubeconfig, None)
    try:
        return install(kube, InstallOptions(), say).upgraded
    finally:
        kube.close()


def stop_idle_daemon(path: Path) -> int:
    """Stop the daemon at ``path`` unless it holds intercepts; returns how many it holds."""
    from core.daemon_line import LineClient

    try:
        with LineClient.connect(path, start=False) as client:
            kept = client.call("intercepts", {})
            if kept:
                return len(kept)
            client.call("quit")
    except (DaemonUnavailable, WaylayError, OSError):
        return 0
    return 0
