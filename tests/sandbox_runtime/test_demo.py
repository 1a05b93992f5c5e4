"""The demo cluster comes up for real and answers through its ingress.

Covers: ``sandbox.demo.install`` creates every object (Deployments, a
StatefulSet, a bare ReplicaSet, two Services over one workload, a headless
Service, a LoadBalancer, Ingresses, RBAC, a TLS Secret) and installing twice
is harmless; every demo pod becomes Ready; the ingress's LoadBalancer address
answers plain HTTP with an ``orders`` reply (default backend), routes by Host
and path, serves HTTPS with a certificate from the sandbox's CA chosen by SNI,
streams a chunked body, and carries a WebSocket upgrade; the traffic
generator's requests reach the apps; the next-steps text names the address.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import aiohttp
import pytest
from kubernetes import client

from sandbox.demo import HOSTS, install, next_steps
from tests.sandbox.conftest import SandboxHandle
from tests.sandbox.helpers import wait_for

pytestmark = pytest.mark.timeout(180)


def _all_ready(core: client.CoreV1Api) -> list[str]:
    pods = [
        p
        for ns in ("shop", "default", "ingress")
        for p in core.list_namespaced_pod(ns).items
        if p.metadata.deletion_timestamp is None
    ]
    ready = [
        p.metadata.name
        for p in pods
        if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]
    return ready if len(ready) == len(pods) == 11 else []


async def _fetch(url: str, host: str | None = None, **kwargs: Any) -> tuple[int, str]:
    headers = {"Host": host} if host else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            url, headers=headers, timeout=aiohttp.ClientTimeout(total=10), **kwargs
        ) as reply,
    ):
        return reply.status, await reply.text()


def test_demo_cluster_serves_through_its_ingress(
    sandbox: SandboxHandle, core: client.CoreV1Api
) -> None:
    created = sandbox.call(install(sandbox.cluster, ca=sandbox.sandbox.ca))
    kinds = {obj["kind"] for obj in created}
    assert {"Deployment", "StatefulSet", "ReplicaSet", "Service", "Ingress", "Secret"} <= kinds
    assert sandbox.call(install(sandbox.cluster, ca=sandbox.sandbox.ca)) == []
    wait_for(lambda: _all_ready(core), timeout=120, what="all 11 demo pods Ready")
    service = wait_for(
        lambda: (
            (s := core.read_namespaced_service("ingress", "ingress")).status.load_balancer.ingress
            and s
        ),
        what="ingress address",
    )
    address = service.status.load_balancer.ingress[0].ip
    ca = sandbox.kubeconfig.parent / "ca.crt"
    steps = sandbox.call(
        next_steps(sandbox.cluster, kubeconfig=str(sandbox.kubeconfig), ca_file=str(ca))
    )
    assert f"curl http://{address}/ " in steps
    asyncio.run(_exercise(address, str(ca)))
    wait_for(
        lambda: (
            (
                text := core.read_namespaced_pod_log(
                    core.list_namespaced_pod("ingress", label_selector="app=traffic")
                    .items[0]
                    .metadata.name,
                    "ingress",
                )
            )
            and " 200 " in text
            and text
        ),
        timeout=30,
        what="traffic generator requests",
    )


async def _exercise(address: str, ca_file: str) -> None:
    status, body = await _fetch(f"http://{address}/")
    assert status == 200 and json.loads(body)["app"] == "orders"
    status, body = await _fetch(f"http://{address}/catalog/items", HOSTS[0])
    assert status == 200 and json.loads(body)["app"] == "catalog"
    assert json.loads(body)["headers"]["X-Forwarded-Host"] == HOSTS[0]
    status, body = await _fetch(f"http://{address}/", HOSTS[1])
    assert json.loads(body)["app"] == "hello"

    async def upload() -> Any:  # a chunked request body, streamed through
        for part in (b"first ", b"second"):
            yield part

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://{address}/orders/new", data=upload(), headers={"Host": HOSTS[0]}
        ) as reply,
    ):
        echoed = json.loads(await reply.text())
    assert echoed["method"] == "POST" and echoed["body"] == "first second"

    # HTTPS: SNI picks the shop certificate, signed by the sandbox's CA.
    context = ssl.create_default_context(cafile=ca_file)
    resolver = _StaticResolver(HOSTS[0], address)
    connector = aiohttp.TCPConnector(ssl=context, resolver=resolver)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(
            f"https://{HOSTS[0]}/ledger", timeout=aiohttp.ClientTimeout(total=10)
        ) as reply:
            assert reply.status == 200
            assert json.loads(await reply.text())["app"] == "ledger"
        async with session.get(f"https://{HOSTS[0]}/orders/stream?chunks=3") as reply:
            lines = [line async for line in reply.content]
            assert len(lines) == 3 and b"chunk 2" in lines[-1]
        async with session.ws_connect(f"wss://{HOSTS[0]}/orders/ws") as ws:
            await ws.send_str("through the ingress")
            assert (await ws.receive(timeout=10)).data == "through the ingress"


class _StaticResolver(aiohttp.abc.AbstractResolver):
    """Resolve one host name to the ingress address (there is no DNS in the sandbox)."""

    def __init__(self, host: str, address: str) -> None:
        self.host, self.address = host, address

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[dict[str, Any]]:
        assert host == self.host
        return [
            {
                "hostname": host,
                "host": self.address,
                "port": port,
                "family": 2,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        return None
