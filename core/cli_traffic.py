"""``waylay traffic``: follow what the agents report, through the per-user daemon.

One line per request (personal intercepts) or connection (global ones): time,
pod, intercept, method, path, status, ms, where it went (``→ you`` or
``→ app``) and, for a request that matched no intercept, why. ``--all`` also
shows everyone's traffic through the agents, as metadata only (no headers):
the way to find out why a request was not caught. ``--count N`` stops after N
events; ``-o json`` prints each event as one JSON object per line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import anyio

from core.cli_session import _target
from core.daemon_client import DaemonClient

__all__ = ["follow", "traffic", "traffic_line"]


def traffic_line(data: dict[str, Any]) -> str:
    """A daemon traffic push as one human line."""
    when = str(data.get("time", ""))[11:23]
    intercept = str(data.get("intercept") or "-").rsplit(":", 1)[-1]
    what = f"{data.get('method') or data.get('protocol', '')} {data.get('path') or '-'}"
    status = data.get("status")
    routed = "→ you" if data.get("routed") == "workstation" else "→ app"
    line = (
        f"{when:12} {data.get('pod', ''):24} {intercept:20} {what:40} "
        f"{status if status is not None else '-':>3} {float(data.get('duration_ms', 0)):6.0f}ms "
        f"{routed}"
    )
    if data.get("routed") != "workstation" and data.get("reason"):
        line += f"  why: {data['reason']}"
    return line


async def follow(
    out: TextIO,
    *,
    context: str | None,
    kubeconfig: str | None,
    watch_all: bool,
    count: int = 0,
    as_json: bool = False,
    socket: Path | None = None,
) -> int:
    """Print the context's traffic events until ``count`` of them (0: forever)."""
    async with await DaemonClient.connect(socket) as control:
        session = await control.call("session", {"context": context, "kubeconfig": kubeconfig})
    name = session["context"]
    async with await DaemonClient.connect(socket, start=False) as feed:
        pushes = await feed.subscribe(watch_all=watch_all)
        seen = 0
        async for push in pushes:
            if push.topic != "traffic" or push.data.get("context") != name:
                continue
            data = {k: v for k, v in push.data.items() if k != "context"}
            out.write((json.dumps(data) if as_json else traffic_line(data)) + "\n")
            out.flush()
            seen += 1
            if count and seen >= count:
                break
    return 0


def traffic(args: argparse.Namespace) -> int:
    context, kubeconfig = _target(args)
    if args.all and args.output != "json":
        print(
            "Watching all traffic through the agents (metadata only); ctrl-c stops.",
            file=sys.stderr,
        )

    async def body() -> int:
        return await follow(
            sys.stdout,
            context=context,
            kubeconfig=kubeconfig,
            watch_all=args.all,
            count=args.count,
            as_json=args.output == "json",
        )

    return anyio.run(body)
