"""End to end: the per-user daemon as the one holder of a user's intercepts.

Covers: an intercept made by `waylay intercept` is seen by a second CLI
process (`status -o json|yaml`, `list -o json|yaml`) and by a daemon client
attached like the TUI; one the TUI-like client makes is seen by the CLI and
`waylay leave` ends it. A daemon killed with SIGKILL fails open (traffic back
on the app within 10 s); the next `waylay intercept` starts a fresh daemon
that takes over the dead one's session and clears it, so the same intercept
succeeds at once and the manager holds exactly one (never a half one);
`waylay quit` leaves it at once (the manager holds none, the app answers)
and a later call finds no daemon running.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import yaml

from core import config
from core.daemon_client import DaemonClient
from tests.core.e2ekit import Demo, eventually, hit, local_server


async def _everyone(demo: Demo, user: str) -> list[dict[str, Any]]:
    """Every intercept in the cluster, as the manager lists them (through ``user``'s daemon)."""
    context, kubeconfig = config.resolve(None, demo.env["KUBECONFIG"])
    async with await DaemonClient.connect(demo.socket(user)) as client:
        found: list[dict[str, Any]] = await client.call(
            "intercepts", {"all": True, "context": context, "kubeconfig": kubeconfig}
        )
    return found


async def test_cli_and_tui_client_share_intercepts(demo: Demo) -> None:
    server, port = local_server("s")
    tui_server, tui_port = local_server("t")
    try:
        demo.waylay(
            "intercept",
            "orders",
            "-n",
            "shop",
            "--port",
            str(port),
            "--http-header",
            "x-who=cli",
            user="s",
        )
        status = yaml.safe_load(demo.waylay("status", "-o", "yaml", user="s").stdout)
        [session] = status["daemon"]["sessions"]
        assert [i["spec"]["name"] for i in session["intercepts"]] == ["orders-shop"]
        context, kubeconfig = config.resolve(None, demo.env["KUBECONFIG"])
        async with await DaemonClient.connect(demo.socket("s"), start=False) as tui:
            mine = await tui.call("intercepts", {})
            assert [i["spec"]["name"] for i in mine] == ["orders-shop"]
            made = await tui.call(
                "intercept",
                {
                    "context": context,
                    "kubeconfig": kubeconfig,
                    "request": {
                        "name": "orders-tui",
                        "workload": "orders",
                        "namespace": "shop",
                        "port": str(tui_port),
                        "http_header": ["x-who=tui"],
                    },
                },
            )
            assert made["intercept"]["spec"]["name"] == "orders-tui"
        listed = json.loads(demo.waylay("list", "-n", "shop", "-o", "json", user="s").stdout)
        [orders] = [w for w in listed if w["name"] == "orders"]
        assert sorted(i["spec"]["name"] for i in orders["intercepts"]) == [
            "orders-shop",
            "orders-tui",
        ]
        as_yaml = yaml.safe_load(demo.waylay("list", "-n", "shop", "-o", "yaml", user="s").stdout)
        assert as_yaml == listed
        human = demo.waylay("status", user="s").stdout
        assert "orders-shop" in human and "orders-tui" in human
        assert hit(demo.orders) == "app"
        assert hit(demo.orders, headers={"x-who": "tui"}) == "local-t"
        assert hit(demo.orders, headers={"x-who": "cli"}) == "local-s"
        demo.waylay("leave", "orders-tui", user="s")
        async with await DaemonClient.connect(demo.socket("s"), start=False) as tui:
            mine = await tui.call("intercepts", {})
            assert [i["spec"]["name"] for i in mine] == ["orders-shop"]
        demo.waylay("leave", "orders-shop", user="s")
    finally:
        server.shutdown()
        tui_server.shutdown()


async def test_sigkill_then_restart_then_quit(demo: Demo) -> None:
    server, port = local_server("k")
    try:
        demo.waylay("intercept", "orders", "-n", "shop", "--port", str(port), user="k")
        assert hit(demo.orders) == "local-k"
        pid = json.loads(demo.waylay("status", "-o", "json", user="k").stdout)["daemon"]["pid"]
        os.kill(pid, signal.SIGKILL)
        eventually(
            lambda: all(hit(demo.orders) == "app" for _ in range(5)),
            "traffic back on the app after the daemon's SIGKILL",
        )
        # a new daemon takes over the dead one's session: the same intercept works at once
        again = demo.waylay("intercept", "orders", "-n", "shop", "--port", str(port), user="k")
        assert "Port already intercepted" not in again.stderr
        status = json.loads(demo.waylay("status", "-o", "json", user="k").stdout)
        assert status["daemon"]["pid"] != pid
        ours = [i for i in await _everyone(demo, "k") if i["spec"]["workload"] == "orders"]
        assert [(i["spec"]["name"], i["state"]) for i in ours] == [("orders-shop", "active")]
        eventually(lambda: hit(demo.orders) == "local-k", "traffic on the new daemon's intercept")
        # quit leaves at once, and nothing survives in the manager
        demo.waylay("quit", user="k")
        assert all(hit(demo.orders) == "app" for _ in range(5))
        assert "not running" in demo.waylay("status", user="k").stdout
        left = [i for i in await _everyone(demo, "watch") if i["spec"]["workload"] == "orders"]
        assert left == []
        demo.waylay("quit", user="watch")
    finally:
        server.shutdown()
