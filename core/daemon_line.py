"""The CLI's synchronous client for the per-user daemon: standard library only.

``waylay intercept`` spends most of its life starting Python; this client
needs neither pydantic nor anyio, so a CLI call that only talks to a running
daemon starts in a fraction of the time. It speaks the same newline-JSON as
``core.daemon_client`` (``core.daemon_protocol`` describes it) and starts the
daemon on demand the same way. The async ``DaemonClient`` stays the TUI's.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import DaemonUnavailable, RemoteError, VersionSkew

__all__ = ["WIRE_VERSION", "LineClient", "socket_path", "spawn_daemon"]

WIRE_VERSION = "1.0"
"""``core.protocol.PROTOCOL_VERSION``, repeated here so the CLI need not load the
wire models (tests/core/test_daemon_line.py keeps the two equal)."""
START_TIMEOUT = 15.0
MAX_LINE = 1 << 22


def socket_path() -> Path:
    """``$WAYLAY_DAEMON_SOCKET``, else ``$XDG_RUNTIME_DIR/waylay/daemon.sock``,
    else ``~/.cache/waylay/daemon.sock``."""
    explicit = os.environ.get("WAYLAY_DAEMON_SOCKET")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "waylay" if runtime else Path.home() / ".cache" / "waylay"
    return base / "daemon.sock"


def spawn_daemon(path: Path) -> None:
    """Start ``python -m core.daemon`` on ``path``, detached from this process."""
    env = dict(os.environ, WAYLAY_DAEMON_SOCKET=str(path))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    subprocess.Popen(
        [sys.executable, "-m", "core.daemon"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def _major(version: str) -> str:
    return version.split(".", 1)[0]


def _dial(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(2.0)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    return sock


def remote(error: dict[str, Any]) -> RemoteError:
    """A daemon's ``DaemonError`` (as JSON) as the error the user reads."""
    return RemoteError(
        str(error.get("code", "unknown")),
        str(error.get("title", "the daemon failed")),
        str(error.get("hint", "")),
        detail=str(error.get("detail", "")),
        severity="warning" if error.get("severity") == "warning" else "error",
    )


class LineClient:
    """One connection: ``with LineClient.connect() as c: c.call("status")``."""

    def __init__(self, sock: socket.socket, path: Path) -> None:
        self.sock = sock
        self.path = path
        self._file = sock.makefile("rb")
        self._ids = itertools.count(1)
        self.last_warnings: list[dict[str, Any]] = []
        self.daemon_pid = 0

    @classmethod
    def connect(
        cls, path: Path | None = None, *, start: bool = True, timeout: float = START_TIMEOUT
    ) -> LineClient:
        """Connect (starting the daemon when none runs and ``start``) and say hello."""
        where = path or socket_path()
        sock = _dial(where)
        if sock is None:
            if not start:
                raise DaemonUnavailable(str(where), "no daemon is running")
            spawn_daemon(where)
            deadline = time.monotonic() + timeout
            while sock is None and time.monotonic() < deadline:
                time.sleep(0.05)
                sock = _dial(where)
            if sock is None:
                raise DaemonUnavailable(
                    str(where), f"the daemon did not start; see {where.parent / 'daemon.log'}"
                )
        client = cls(sock, where)
        try:
            hello = client.call("hello", {"version": WIRE_VERSION})
        except RemoteError as err:
            client.close()
            raise VersionSkew(WIRE_VERSION, err.detail, peer="waylay daemon") from None
        except BaseException:
            client.close()
            raise
        theirs = str(hello.get("version", ""))
        if _major(theirs) != _major(WIRE_VERSION):
            client.close()
            raise VersionSkew(WIRE_VERSION, theirs, peer="waylay daemon")
        client.daemon_pid = int(hello.get("pid", 0))
        return client

    def close(self) -> None:
        self._file.close()
        self.sock.close()

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, deadline: float) -> dict[str, Any]:
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            raw = self._file.readline(MAX_LINE)
        except TimeoutError:
            raise DaemonUnavailable(str(self.path), "the daemon did not answer in time")
        except OSError as exc:
            raise DaemonUnavailable(str(self.path), f"cannot read: {exc}")
        if not raw.endswith(b"\n"):
            raise DaemonUnavailable(str(self.path), "the daemon closed the connection")
        try:
            line = json.loads(raw)
        except ValueError as exc:
            raise DaemonUnavailable(str(self.path), f"unreadable answer: {exc}")
        if not isinstance(line, dict):
            raise DaemonUnavailable(str(self.path), f"unreadable answer: {raw[:80]!r}")
        return line

    def call(
        self,
        op: str,
        params: dict[str, Any] | None = None,
        *,
        progress: Callable[[str], None] | None = None,
        timeout: float = 300.0,
    ) -> Any:
        """One request; progress lines go to ``progress``; errors raise ``RemoteError``."""
        rid = next(self._ids)
        frame = json.dumps({"id": rid, "op": op, "params": params or {}}).encode() + b"\n"
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(frame)
        except OSError as exc:
            raise DaemonUnavailable(str(self.path), f"cannot send: {exc}")
        deadline = time.monotonic() + timeout
        while True:
            line = self._read(deadline)
            if line.get("id") != rid:
                continue
            if line.get("kind") == "progress":
                if progress is not None:
                    progress(str(line.get("message", "")))
                continue
            if line.get("kind") == "reply":
                break
        self.last_warnings = list(line.get("warnings") or [])
        if not line.get("ok"):
            raise remote(line.get("error") or {"code": "unknown", "title": f"{op} failed"})
        return line.get("result")
