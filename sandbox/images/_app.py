"""What every demo program shares: where to listen and how to stop.

A demo program listens on the pod's own address (``POD_IP``, set by the
kubelet), never on ``0.0.0.0``: that is what lets two pods on one machine both
use port 8080. Outside a pod (running a program by hand) it listens on
``127.0.0.1``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys


def pod_ip() -> str:
    return os.environ.get("POD_IP") or "127.0.0.1"


def env_port(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        sys.exit(f"{name}={raw!r} is not a port number")


def pod_name() -> str:
    return os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or "local"


async def wait_for_stop() -> None:
    """Return on SIGTERM or SIGINT (the kubelet's graceful stop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def log(message: str) -> None:
    print(message, flush=True)
