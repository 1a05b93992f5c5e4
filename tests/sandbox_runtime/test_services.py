"""Services are loopback forwarders that follow Endpoints, as kube-proxy does.

Covers: a ClusterIP is allocated at create and anyone can connect to it;
connections are balanced over every ready endpoint; ``notReadyAddresses`` get
no traffic; with no ready endpoint the connection is refused (reset); a named
``targetPort`` is resolved on each endpoint's pod, following a renamed port;
UDP datagrams are forwarded and answered; a LoadBalancer Service gets
``status.loadBalancer.ingress[0].ip`` that serves too; a headless Service gets
no ClusterIP and no listener; deleting a Service closes its listener.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.sandbox_runtime.conftest import Runtime
from tests.sandbox_runtime.helpers import condition, container, http_get, pod, wait_for


def _service(name: str, *ports: dict, **spec: object) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": name}, "ports": list(ports), **spec},
    }


async def _run_pods(runtime: Runtime, *pods: dict) -> list[dict]:
    for spec in pods:
        await runtime.cluster.create("pods", spec)
    ready = []
    for spec in pods:
        name = spec["metadata"]["name"]
        ready.append(
            await wait_for(
                lambda n=name: (
                    (p := runtime.cluster.store.get("pods", "default", n))
                    and condition(p, "Ready") == "True"
                    and p
                ),
                what=f"{name} Ready",
            )
        )
    return ready


async def _endpoints(
    runtime: Runtime, name: str, ready: list[dict], ports: list[dict], *, not_ready: list[dict] = ()
) -> None:  # type: ignore[assignment]
    def address(p: dict) -> dict:
        return {
            "ip": p["status"]["podIP"],
            "targetRef": {"kind": "Pod", "namespace": "default", "name": p["metadata"]["name"]},
        }

    subset: dict = {"ports": ports}
    if ready:
        subset["addresses"] = [address(p) for p in ready]
    if not_ready:
        subset["notReadyAddresses"] = [address(p) for p in not_ready]
    await runtime.cluster.create(
        "endpoints", {"metadata": {"name": name, "namespace": "default"}, "subsets": [subset]}
    )


def _echo_pod(name: str, app: str, port: int = 8080, port_name: str = "http") -> dict:
    spec = pod(
        name,
        container(
            env=[{"name": "PORT", "value": str(port)}],
            ports=[{"name": port_name, "containerPort": port}],
            readinessProbe={"tcpSocket": {"port": port}, "periodSeconds": 1},
        ),
    )
    spec["metadata"]["labels"] = {"app": app}
    return spec


async def _who(host: str, port: int) -> str:
    reply = await http_get(host, port, "/who")
    return str(json.loads(reply.split(b"\r\n\r\n", 1)[1])["pod"])


async def test_cluster_ip_balances_over_ready_endpoints(runtime: Runtime) -> None:
    pods = await _run_pods(runtime, *(_echo_pod(f"web-{i}", "web") for i in range(4)))
    service = await runtime.cluster.create(
        "services", _service("web", {"name": "http", "port": 80, "targetPort": "http"})
    )
    ip = service["spec"]["clusterIP"]
    assert ip.startswith(f"127.{runtime.cluster.ipam.block}.")
    await _endpoints(runtime, "web", pods[:3], [{"name": "http", "port": 8080}], not_ready=pods[3:])
    await runtime.proxy.settle()
    seen = {await _who(ip, 80) for _ in range(9)}
    assert seen == {"web-0", "web-1", "web-2"}


async def test_no_ready_endpoint_refuses(runtime: Runtime) -> None:
    service = await runtime.cluster.create("services", _service("empty", {"port": 8081}))
    await runtime.proxy.settle()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        reply = await http_get(service["spec"]["clusterIP"], 8081)
        if not reply:
            raise ConnectionResetError("closed without a reply")


async def test_named_target_port_follows_a_renamed_port(runtime: Runtime) -> None:
    # The endpoint still says 8080, but the pod now carries the name on 9090.
    (moved,) = await _run_pods(runtime, _echo_pod("moved", "moved", port=9090))
    service = await runtime.cluster.create(
        "services", _service("moved", {"name": "web", "port": 80, "targetPort": "http"})
    )
    await _endpoints(runtime, "moved", [moved], [{"name": "web", "port": 8080}])
    await runtime.proxy.settle()
    assert await _who(service["spec"]["clusterIP"], 80) == "moved"


async def test_udp_is_forwarded_and_answered(runtime: Runtime) -> None:
    spec = pod(
        "dns", container("udp", "waylay/demo-udp-echo", env=[{"name": "PORT", "value": "5353"}])
    )
    (ready,) = await _run_pods(runtime, spec)
    service = await runtime.cluster.create(
        "services",
        _service("dns", {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"}),
    )
    await _endpoints(runtime, "dns", [ready], [{"name": "dns", "port": 5353, "protocol": "UDP"}])
    await runtime.proxy.settle()
    loop = asyncio.get_running_loop()
    answers: asyncio.Queue[bytes] = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            answers.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(
        Client, remote_addr=(service["spec"]["clusterIP"], 53)
    )
    try:

        async def ask() -> bytes:
            transport.sendto(b"ping")
            return await asyncio.wait_for(answers.get(), 1.0)

        # The echo may still be binding when its process is "ready": retry a few times.
        reply = b""
        for _ in range(20):
            try:
                reply = await ask()
                break
            except TimeoutError:
                continue
        assert reply == b"dns: ping"
    finally:
        transport.close()


async def test_load_balancer_gets_an_ingress_address(runtime: Runtime) -> None:
    (ready,) = await _run_pods(runtime, _echo_pod("front", "front"))
    await runtime.cluster.create(
        "services",
        _service(
            "front", {"name": "http", "port": 8088, "targetPort": "http"}, type="LoadBalancer"
        ),
    )
    await _endpoints(runtime, "front", [ready], [{"name": "http", "port": 8080}])
    service = await wait_for(
        lambda: (
            (s := runtime.cluster.store.get("services", "default", "front"))
            and s["status"].get("loadBalancer", {}).get("ingress")
            and s
        ),
        what="ingress address",
    )
    address = service["status"]["loadBalancer"]["ingress"][0]["ip"]
    assert address != service["spec"]["clusterIP"]
    assert await _who(address, 8088) == "front"
    assert await _who(service["spec"]["clusterIP"], 8088) == "front"


async def test_headless_service_has_no_listener(runtime: Runtime) -> None:
    service = await runtime.cluster.create(
        "services", _service("headless", {"port": 8089}, clusterIP="None")
    )
    await runtime.proxy.settle()
    assert service["spec"]["clusterIP"] == "None"
    assert not runtime.proxy._services.get(("default", "headless"), None) or not (
        runtime.proxy._services[("default", "headless")].listeners
    )


async def test_deleting_a_service_closes_its_listener(runtime: Runtime) -> None:
    service = await runtime.cluster.create("services", _service("gone", {"port": 8090}))
    await runtime.proxy.settle()
    ip = service["spec"]["clusterIP"]
    _, writer = await asyncio.open_connection(ip, 8090)
    writer.close()
    await runtime.cluster.delete("services", "default", "gone")
    await runtime.proxy.settle()

    async def refused() -> bool:
        try:
            _, w = await asyncio.open_connection(ip, 8090)
        except ConnectionRefusedError:
            return True
        w.close()
        return False

    assert await refused()
