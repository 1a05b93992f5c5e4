"""``python -m sandbox start|status|stop|serve``: run a sandbox cluster on this machine.

- ``start [--dir DIR] [--demo] [--port N]``: serve in the background (its own
  process group, log in ``DIR/sandbox.log``), wait until it answers, print
  ``export KUBECONFIG=DIR/kubeconfig``;
- ``status [--dir DIR]``: say whether it runs and where (exit 1 when not);
- ``stop [--dir DIR]``: stop it and everything it started (the whole process group);
- ``serve [--dir DIR] [--demo] [--port N]``: serve in the foreground until Ctrl-C.

``DIR`` defaults to ``.sandbox`` in the current directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sandbox.server import Sandbox

__all__ = ["main"]

_STATE = "server.json"
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 15.0


def _state(directory: Path) -> dict[str, object] | None:
    try:
        data = json.loads((directory / _STATE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _healthy(directory: Path, url: str) -> bool:
    try:
        ctx = ssl.create_default_context(cafile=str(directory / "ca.crt"))
        with urllib.request.urlopen(f"{url}/readyz", context=ctx, timeout=2) as reply:
            return bool(reply.status == 200)
    except (OSError, ValueError):
        return False


def _running(directory: Path) -> dict[str, object] | None:
    state = _state(directory)
    if state is None:
        return None
    pid = state.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return None
    return state


async def _serve(directory: Path, port: int, demo: bool) -> None:
    from sandbox.server import Sandbox

    sandbox = Sandbox(directory, port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await sandbox.start()
    try:
        if demo:
            await sandbox.install_demo()
            await _write_next_steps(sandbox, directory)
        state = {"pid": os.getpid(), "url": sandbox.url, "kubeconfig": str(sandbox.kubeconfig)}
        (directory / _STATE).write_text(json.dumps(state))
        print(f"sandbox serving at {sandbox.url}", flush=True)
        print(f"export KUBECONFIG={sandbox.kubeconfig}", flush=True)
        await stop.wait()
    finally:
        await sandbox.stop()
        with contextlib.suppress(OSError):
            (directory / _STATE).unlink()


_NEXT_STEPS = "next-steps.txt"


async def _write_next_steps(sandbox: Sandbox, directory: Path) -> None:
    """Tell a newcomer what to try (``start --demo`` prints this file)."""
    from sandbox.demo import next_steps

    assert sandbox.cluster is not None, "the sandbox is started"
    text = await next_steps(
        sandbox.cluster, kubeconfig=str(sandbox.kubeconfig), ca_file=str(directory / "ca.crt")
    )
    (directory / _NEXT_STEPS).write_text(text + "\n")


def cmd_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    directory = Path(args.dir).resolve()
    if _running(directory):
        print(f"a sandbox already runs from {directory}; stop it first", file=sys.stderr)
        return 1
    directory.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(_serve(directory, args.port, args.demo))
    except OSError as exc:
        print(f"the sandbox cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    running = _running(directory)
    if running:
        print(f"# sandbox already running at {running['url']} (pid {running['pid']})")
        print(f"export KUBECONFIG={directory / 'kubeconfig'}")
        return 0
    directory.mkdir(parents=True, exist_ok=True)
    for stale in (_STATE, _NEXT_STEPS):
        with contextlib.suppress(OSError):
            (directory / stale).unlink()
    command = [sys.executable, "-m", "sandbox", "serve", "--dir", str(directory)]
    command += ["--port", str(args.port)] + (["--demo"] if args.demo else [])
    with open(directory / "sandbox.log", "ab") as log_file:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        state = _state(directory)
        if state and state.get("pid") == child.pid and _healthy(directory, str(state["url"])):
            print(f"# sandbox running at {state['url']} (pid {child.pid})")
            print(f"export KUBECONFIG={directory / 'kubeconfig'}")
            steps = directory / _NEXT_STEPS
            if args.demo and steps.exists():
                print("\n" + steps.read_text().rstrip())
            return 0
        if child.poll() is not None:
            print(
                f"the sandbox exited with code {child.returncode}; see {directory / 'sandbox.log'}",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.1)
    _kill_group(child.pid)
    print(
        f"the sandbox did not become healthy in {_START_TIMEOUT:.0f}s; "
        f"see {directory / 'sandbox.log'}",
        file=sys.stderr,
    )
    return 1


def cmd_status(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    state = _running(directory)
    if state is None:
        print(f"no sandbox running from {directory}; start one with: python -m sandbox start")
        return 1
    health = "healthy" if _healthy(directory, str(state["url"])) else "not answering"
    print(f"sandbox running at {state['url']} (pid {state['pid']}), {health}")
    print(f"export KUBECONFIG={directory / 'kubeconfig'}")
    return 0


def _kill_group(pid: int) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left of it."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT
    while time.monotonic() < deadline and _alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def cmd_stop(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    state = _running(directory)
    if state is None:
        print(f"no sandbox running from {directory}")
        return 0
    pid = state["pid"]
    assert isinstance(pid, int)
    _kill_group(pid)
    with contextlib.suppress(OSError):
        (directory / _STATE).unlink()
    print(f"sandbox stopped (pid {pid})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (
        ("start", "serve in the background and print the KUBECONFIG to use"),
        ("serve", "serve in the foreground"),
        ("status", "say whether a sandbox runs"),
        ("stop", "stop the sandbox and everything it started"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--dir", default=".sandbox", help="state directory (default: .sandbox)")
        if name in ("start", "serve"):
            p.add_argument("--demo", action="store_true", help="create the demo objects")
            p.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    args = parser.parse_args(argv)
    commands = {"start": cmd_start, "serve": cmd_serve, "status": cmd_status, "stop": cmd_stop}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
