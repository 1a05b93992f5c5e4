"""``pods/portforward`` over WebSocket works with the real ``kubernetes`` client.

Covers: ``kubernetes.stream.portforward`` (v5 offered, v4 accepted) carries a
byte stream both ways to the pod's address; several ports on one WebSocket;
initial port frames are sent on the data and error channel of each port;
a port with nothing listening yields the error text on its error channel;
a client offering only ``v4.channel.k8s.io`` gets it; bad ``ports`` are a 400;
the kubelet forwards to a running pod's own IP.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import anyio
import pytest
from aiohttp import web
from kubernetes import client
from kubernetes.stream import portforward

from sandbox.errors import ApiError
from sandbox.portforward import serve_portforward
from tests.sandbox_runtime.conftest import Runtime
from tests.sandbox_runtime.helpers import condition, get_via_portforward, pod, wait_for


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data.upper())
        await writer.drain()
    writer.close()


@asynccontextmanager
async def _api(pod_ip: str) -> AsyncIterator[str]:
    """An HTTP server with the pods/portforward route, forwarding to ``pod_ip``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await serve_portforward(
                request, pod_ip=pod_ip, pod_name=request.match_info["name"], pod_uid="uid-1"
            )
        except ApiError as exc:
            return web.json_response(exc.status(), status=exc.code)

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}/portforward", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _core(url: str) -> client.CoreV1Api:
    config = client.Configuration()
    config.host = url
    return client.CoreV1Api(client.ApiClient(config))


def _round_trip(api: client.CoreV1Api, ports: list[int], payload: bytes) -> dict[int, bytes]:
    forward = portforward(
        api.connect_get_namespaced_pod_portforward,
        "p",
        "default",
        ports=",".join(str(p) for p in ports),
    )
    replies = {}
    for port in ports:
        sock = forward.socket(port)
        sock.settimeout(5)
        sock.sendall(payload + str(port).encode())
        replies[port] = sock.recv(1024)
    for port in ports:
        forward.socket(port).close()
    return replies


async def _listen() -> tuple[asyncio.base_events.Server, int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_client_portforward_round_trips_several_ports() -> None:
    first, port_a = await _listen()
    second, port_b = await _listen()
    async with _api("127.0.0.1") as url:
        replies = await anyio.to_thread.run_sync(
            _round_trip, _core(url), [port_a, port_b], b"hello "
        )
    first.close()
    second.close()
    assert replies == {port_a: f"HELLO {port_a}".encode(), port_b: f"HELLO {port_b}".encode()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _refused(api: client.CoreV1Api, port: int) -> str | None:
    forward = portforward(
        api.connect_get_namespaced_pod_portforward, "p", "default", ports=str(port)
    )
    sock = forward.socket(port)
    sock.settimeout(5)
    data = sock.recv(1024)  # the client closes the socket when the error arrives
    assert data == b""
    return forward.error(port)


async def test_nothing_listening_reports_on_the_error_channel() -> None:
    port = _free_port()
    async with _api("127.0.0.1") as url:
        error = await anyio.to_thread.run_sync(_refused, _core(url), port)
    assert error is not None
    assert f"error forwarding port {port} to pod p, uid uid-1" in error
    assert "connection refused" in error


async def test_v4_framing_on_the_wire() -> None:
    server, port = await _listen()
    async with _api("127.0.0.1") as url, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(
            f"{url}/api/v1/namespaces/default/pods/p/portforward?ports={port}",
            protocols=("v4.channel.k8s.io",),
            timeout=aiohttp.ClientWSTimeout(ws_close=5),
        )
        assert ws.protocol == "v4.channel.k8s.io"
        header = port.to_bytes(2, "little")
        first = await asyncio.wait_for(ws.receive_bytes(), 5)
        second = await asyncio.wait_for(ws.receive_bytes(), 5)
        assert (first, second) == (b"\x00" + header, b"\x01" + header)
        await ws.send_bytes(b"\x00abc")
        assert await asyncio.wait_for(ws.receive_bytes(), 5) == b"\x00ABC"
        await ws.close()
    server.close()


async def test_bad_ports_are_a_bad_request() -> None:
    async with _api("127.0.0.1") as url, aiohttp.ClientSession() as session:
        response = await session.get(
            f"{url}/api/v1/namespaces/default/pods/p/portforward?ports=http",
            headers={"Connection": "Upgrade", "Upgrade": "websocket"},
        )
        assert response.status == 400
        assert "invalid port" in (await response.json())["message"]


async def test_kubelet_forwards_to_the_pods_own_address(runtime: Runtime) -> None:
    await runtime.cluster.create("pods", pod("target"))
    obj = await wait_for(
        lambda: (
            (p := runtime.cluster.store.get("pods", "default", "target"))
            and condition(p, "Ready") == "True"
            and p
        ),
        what="Ready",
    )

    async def handle(request: web.Request) -> web.StreamResponse:
        return await runtime.kubelet.portforward(request, obj)

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}/portforward", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    def get(api: client.CoreV1Api) -> bytes:
        return get_via_portforward(api, "p", "default", "/via-forward", timeout=5)

    try:
        reply = await anyio.to_thread.run_sync(get, _core(url))
    finally:
        await runner.cleanup()
    assert b'"pod": "target"' in reply and b"/via-forward" in reply


@pytest.mark.parametrize("ports", ["", "0", "70000"])
def test_parse_ports_rejects(ports: str) -> None:
    from sandbox.portforward import parse_ports

    with pytest.raises(ApiError):
        parse_ports([ports])
