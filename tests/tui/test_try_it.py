"""The wizard result's "try it" line works from where the user is.

Covers: with a preview URL, curl that URL (path kept); without one, when the
Service's clusterIP answers from this machine (a real API server allocates
it, a real listener stands on that loopback address), curl the
clusterIP and port with the intercept's header; a clusterIP that does not
answer from here (nothing listening), a headless Service and a missing
Service give no address; then the in-cluster name, labelled "from a pod in
the cluster".
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.abc

from core.protocol import InterceptInfo, InterceptSpec, PathRule
from tests.core import objects as o
from tests.core.apiserver import serve_api
from tui.core_source import connect_core
from tui.screens.try_it import IN_CLUSTER, try_it
from tui.source import InterceptOutcome


def spec(service: str = "orders", port: int = 80) -> InterceptSpec:
    return InterceptSpec(
        name="orders-demo",
        namespace="demo",
        workload="orders",
        service=service,
        service_port=port,
        mechanism="http",
        headers={"x-dev": "alice"},
        path=PathRule(kind="prefix", value="/api"),
    )


def outcome(
    s: InterceptSpec, preview: str | None = None, ip: str | None = None
) -> InterceptOutcome:
    info = InterceptInfo(
        id=f"s1:{s.name}", spec=s, session_id="s1", owner="alice", created=datetime.now(UTC)
    )
    return InterceptOutcome(info, preview, cluster_ip=ip)


def test_try_it_lines() -> None:
    s = spec()
    assert try_it(outcome(s, "https://p-1.example.test/")) == (
        "curl https://p-1.example.test/api",
        "",
    )
    assert try_it(outcome(s, ip="127.3.128.7")) == (
        "curl -H 'x-dev: alice' http://127.3.128.7:80/api",
        "",
    )
    assert try_it(outcome(s)) == ("curl -H 'x-dev: alice' http://orders.demo:80/api", IN_CLUSTER)


async def test_reachable_cluster_ip(tmp_path: Path) -> None:
    async with serve_api(tmp_path) as api:
        made = await api.create("services", o.service("open", "open"))
        ip = made["spec"]["clusterIP"]
        assert ipaddress.ip_address(ip).is_loopback  # the sandbox's clusterIPs
        headless = o.service("headless", "headless")
        headless["spec"]["clusterIP"] = "None"
        await api.create("services", headless)
        listener = await anyio.create_tcp_listener(local_host=ip, local_port=0)
        port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        source = await connect_core(context="admin", kubeconfig=str(api.kubeconfig))
        try:
            assert await source.reachable_cluster_ip(spec("open", port)) == ip
            await listener.aclose()
            assert await source.reachable_cluster_ip(spec("open", port)) is None
            assert await source.reachable_cluster_ip(spec("headless", port)) is None
            assert await source.reachable_cluster_ip(spec("missing", port)) is None
        finally:
            await listener.aclose()
            await source.discovery.aclose()
