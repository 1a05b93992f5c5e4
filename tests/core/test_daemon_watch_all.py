"""The daemon's traffic subscriptions: ours, or all traffic through the agents.

A real daemon over a real manager client API; each agent end of a tunnel is a
real ``core.tunnel.AgentTunnel`` (as in ``tests.core.managerkit``).

Covers: a ``subscribe`` with ``watch_all`` makes the context's session open a
watcher tunnel (``<session>/watch``, asking for ``watch_all``); another
session's event sent on it reaches that subscriber with ``mine: false`` and
its reason, but not a plain subscriber; our own event reaches both with
``mine: true``; when the last watching subscriber hangs up the watcher tunnel
closes. ``waylay traffic --all --count N`` (``core.cli_traffic.follow``) prints
the same as lines: "→ app" with why it missed, "→ you" for ours, and stops
after N.
"""

from __future__ import annotations

import contextlib
import io
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc

from core.cli_traffic import follow
from core.daemon import ContextHandle, Daemon
from core.daemon_client import DaemonClient
from core.daemon_protocol import DaemonPush
from core.models import WorkloadInfo
from core.protocol import TrafficEvent
from core.session import Session
from core.tunnel import AgentTunnel
from tests.core.managerkit import serve_manager
from tests.core.test_daemon import ORDERS
from tests.core.test_session import UrlBox

WAIT = 10.0


class Tunnels:
    """Every tunnel a session opens, served by a real AgentTunnel, in order."""

    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self.tg = tg
        self.opened: list[AgentTunnel] = []

    async def open(self, pod: str, namespace: str, port: int) -> anyio.abc.ByteStream:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        theirs.setblocking(False)
        tunnel = AgentTunnel(await anyio.abc.UNIXSocketStream.from_socket(theirs), pod=pod)
        self.opened.append(tunnel)
        self.tg.start_soon(self._serve, tunnel)
        return await anyio.abc.UNIXSocketStream.from_socket(ours)

    @staticmethod
    async def _serve(tunnel: AgentTunnel) -> None:
        with contextlib.suppress(Exception):
            await tunnel.run()

    def live(self, watcher: bool) -> list[AgentTunnel]:
        return [
            t
            for t in self.opened
            if not t.closed and t.session_id and t.session_id.endswith("/watch") == watcher
        ]


async def next_traffic(pushes: AsyncIterator[DaemonPush]) -> DaemonPush:
    with anyio.fail_after(WAIT):
        while (push := await pushes.__anext__()).topic != "traffic":
            pass
    return push


async def until(cond, what: str) -> None:  # type: ignore[no-untyped-def]
    with anyio.fail_after(WAIT):
        while not cond():
            await anyio.sleep(0.02)


async def test_watch_all_subscription(tmp_path: Path) -> None:
    async with anyio.create_task_group() as tg, serve_manager() as manager:
        manager.add_agent("orders-a")
        tunnels = Tunnels(tg)

        async def factory(context: str | None, kubeconfig: str | None) -> ContextHandle:
            session = Session(
                context=context or "test",
                connector=UrlBox(manager.url).connect,
                opener=tunnels.open,
            )

            async def workloads(namespace: str) -> list[WorkloadInfo]:
                return [w for w in [ORDERS] if w.namespace == namespace]

            return ContextHandle(context or "test", "demo", session, workloads)

        daemon = Daemon(path=tmp_path / "run" / "d.sock", factory=factory)
        await tg.start(daemon.serve)
        client = await DaemonClient.connect(daemon.path, start=False)
        result = await client.call("intercept", {"request": {"name": "orders", "port": "1"}})
        ours = result["intercept"]["id"]
        await until(lambda: tunnels.live(watcher=False), "our tunnel")
        assert not tunnels.live(watcher=True)

        plain_conn = await DaemonClient.connect(daemon.path, start=False)
        plain = await plain_conn.subscribe()
        watch_conn = await DaemonClient.connect(daemon.path, start=False)
        watching = await watch_conn.subscribe(watch_all=True)
        await until(lambda: tunnels.live(watcher=True), "the watcher tunnel")
        watcher = tunnels.live(watcher=True)[0]
        assert watcher.watch_all and watcher.session_id == f"{ours.split(':')[0]}/watch"

        watcher.push(
            TrafficEvent(pod="orders-a", path="/missed", routed="app", reason="no x-dev header")
        )
        tunnels.live(watcher=False)[0].push(
            TrafficEvent(pod="orders-a", intercept=ours, path="/mine", routed="workstation")
        )
        missed = await next_traffic(watching)
        assert missed.data["path"] == "/missed" and missed.data["mine"] is False
        assert missed.data["reason"] == "no x-dev header"
        mine = await next_traffic(watching)
        assert mine.data["path"] == "/mine" and mine.data["mine"] is True
        first_plain = await next_traffic(plain)  # /missed was never sent to it
        assert first_plain.data["path"] == "/mine" and first_plain.data["mine"] is True

        await watch_conn.aclose()
        await until(lambda: not tunnels.live(watcher=True), "the watcher tunnel closed")
        assert tunnels.live(watcher=False)  # ours untouched

        # `waylay traffic --all --count 2`: the same, as lines a person reads
        out = io.StringIO()

        async def cli() -> None:
            await follow(
                out, context=None, kubeconfig=None, watch_all=True, count=2, socket=daemon.path
            )

        async with anyio.create_task_group() as cli_tg:
            cli_tg.start_soon(cli)
            await until(lambda: tunnels.live(watcher=True), "the CLI's watcher tunnel")
            tunnels.live(watcher=True)[0].push(
                TrafficEvent(pod="orders-a", path="/missed", method="GET", reason="no x-dev header")
            )
            tunnels.live(watcher=False)[0].push(
                TrafficEvent(pod="orders-a", intercept=ours, path="/mine", routed="workstation")
            )
        missed_line, mine_line = out.getvalue().splitlines()
        assert "GET /missed" in missed_line and missed_line.endswith("→ app  why: no x-dev header")
        assert "/mine" in mine_line and mine_line.endswith("→ you")
        await until(lambda: not tunnels.live(watcher=True), "the CLI's watcher tunnel closed")

        await plain_conn.aclose()
        with contextlib.suppress(Exception):
            await client.call("quit")
        await client.aclose()
        with anyio.fail_after(WAIT):
            await daemon.stopped()
        tg.cancel_scope.cancel()
