"""The demo ingress keeps keep-alive upstream connections, like nginx's ``keepalive 32``.

Covers (the ingress's proxy and pools in process, real HTTP servers both sides):
- sequential requests from different client connections reuse one upstream
  connection (the upstream sees one peer port and accepts one connection),
  and the access log names that connection's port;
- 40 requests in flight at once open 40 upstream connections (in-use ones are
  not limited); when they end, 32 stay open idle and the rest are closed;
- a streamed response reaches the client before the upstream has finished it,
  and a request body is streamed up, over the pooled connection;
- a WebSocket upgrade is carried through (and other requests keep pooling);
- each Service has its own pool; dropping a deleted Service's pool, and
  closing all pools on shutdown, closes their upstream connections.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from sandbox.images.ingress import KEEPALIVE, Proxy, UpstreamPools

TIMEOUT = aiohttp.ClientTimeout(total=20)


@dataclass
class Upstream:
    """An HTTP server that records the connections its requests came on."""

    port: int = 0
    transports: list[asyncio.BaseTransport] = field(default_factory=list)
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    """``/hold`` waits for it before answering."""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    """``/stream`` sends one line, then waits for it."""

    def open(self) -> int:
        return sum(1 for t in self.transports if not t.is_closing())

    def _seen(self, request: web.Request) -> int:
        transport = request.transport
        assert transport is not None
        if transport not in self.transports:
            self.transports.append(transport)
        peer = transport.get_extra_info("peername")
        return int(peer[1])

    async def echo(self, request: web.Request) -> web.StreamResponse:
        peer = self._seen(request)
        if request.path == "/hold":
            await self.hold.wait()
        if request.path == "/ws":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await ws.send_str(f"echo:{message.data}")
            return ws
        if request.path == "/stream":
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b"first\n")
            await self.release.wait()
            await response.write(b"rest\n")
            await response.write_eof()
            return response
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        return web.json_response({"peer": peer, "size": size, "sha256": digest.hexdigest()})


@dataclass
class Rig:
    upstream: Upstream
    pools: UpstreamPools
    url: str
    client: aiohttp.ClientSession
    route: dict[str, str]
    """Host -> Service name (all served by the one upstream)."""

    async def peer(self, host: str = "a.test", path: str = "/") -> int:
        """The upstream peer port of one request made on a fresh client connection."""
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as once,
            once.get(self.url + path, headers={"Host": host}) as reply,
        ):
            assert reply.status == 200, await reply.text()
            return int((await reply.json())["peer"])


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])


async def _until(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"{what} within {within:g}s"
        await asyncio.sleep(0.02)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    upstream = Upstream()
    upstream_app = web.Application()
    upstream_app.router.add_route("*", "/{tail:.*}", upstream.echo)
    upstream_runner, upstream.port = await _serve(upstream_app)
    route = {"a.test": "shop/a", "b.test": "shop/b"}

    def pick(request: web.Request) -> tuple[str, tuple[str, int]] | web.Response:
        name = route.get(request.host.split(":")[0])
        if name is None:
            return web.Response(status=404, text="default backend - 404\n")
        return name, ("127.0.0.1", upstream.port)

    pools = UpstreamPools()
    proxy_app = web.Application(client_max_size=0)
    proxy_app.router.add_route("*", "/{tail:.*}", Proxy(pick, pools).handle)
    proxy_runner, proxy_port = await _serve(proxy_app)
    client = aiohttp.ClientSession(timeout=TIMEOUT, connector=aiohttp.TCPConnector(limit=0))
    try:
        yield Rig(upstream, pools, f"http://127.0.0.1:{proxy_port}", client, route)
    finally:
        upstream.hold.set()
        upstream.release.set()
        await client.close()
        await proxy_runner.cleanup()
        await pools.close()
        await upstream_runner.cleanup()


async def test_sequential_requests_reuse_one_upstream_connection(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    peers = [await rig.peer() for _ in range(5)]
    assert len(set(peers)) == 1, peers
    assert len(rig.upstream.transports) == 1
    assert rig.upstream.open() == 1
    # the access log names the upstream connection each request used
    access = [line for line in capsys.readouterr().out.splitlines() if "-> shop/a" in line]
    assert len(access) == 5 and all(line.endswith(f" via :{peers[0]}") for line in access)


async def test_idle_connections_are_capped_like_nginx(rig: Rig) -> None:
    in_flight = KEEPALIVE + 8

    async def one() -> int:
        async with rig.client.get(rig.url + "/hold", headers={"Host": "a.test"}) as reply:
            return int((await reply.json())["peer"])

    tasks = [asyncio.create_task(one()) for _ in range(in_flight)]
    await _until(lambda: len(rig.upstream.transports) == in_flight, "every request upstream")
    rig.upstream.hold.set()
    assert len(set(await asyncio.gather(*tasks))) == in_flight
    await _until(lambda: rig.upstream.open() == KEEPALIVE, f"{KEEPALIVE} idle connections kept")
    # the kept ones serve the next requests: no new upstream connection
    await rig.peer()
    assert len(rig.upstream.transports) == in_flight


async def test_bodies_stream_both_ways_over_the_pool(rig: Rig) -> None:
    first = await rig.peer()
    async with rig.client.get(rig.url + "/stream", headers={"Host": "a.test"}) as reply:
        assert await asyncio.wait_for(reply.content.readline(), 10) == b"first\n"
        rig.upstream.release.set()
        assert await reply.content.read() == b"rest\n"

    body = bytes(range(256)) * 4096  # 1 MiB

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    async with rig.client.post(rig.url + "/", data=chunks(), headers={"Host": "a.test"}) as reply:
        got = await reply.json()
    assert (got["size"], got["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    assert got["peer"] == first  # sequential: the same pooled connection each time
    assert len(rig.upstream.transports) == 1


async def test_websocket_is_carried(rig: Rig) -> None:
    await rig.peer()
    async with rig.client.ws_connect(rig.url + "/ws", headers={"Host": "a.test"}) as ws:
        await ws.send_str("hi")
        assert await ws.receive_str(timeout=10) == "echo:hi"
        # an open WebSocket holds its connection; plain requests pool on another one
        during = await rig.peer()
        assert await rig.peer() == during
    # the upgraded connection is closed with the WebSocket, never pooled
    await _until(lambda: rig.upstream.open() == 1, "the WebSocket's connection closed")
    assert await rig.peer() == during


async def test_pools_per_service_and_closing(rig: Rig) -> None:
    a, b = await rig.peer("a.test"), await rig.peer("b.test")
    assert a != b
    assert (await rig.peer("a.test"), await rig.peer("b.test")) == (a, b)
    assert rig.upstream.open() == 2
    await rig.pools.retain({"shop/a"})  # shop/b was deleted
    await _until(lambda: rig.upstream.open() == 1, "the deleted Service's connection closed")
    assert await rig.peer("a.test") == a
    await rig.pools.close()
    await _until(lambda: rig.upstream.open() == 0, "every pooled connection closed")


async def test_unrouted_request_is_answered_by_the_ingress(rig: Rig) -> None:
    async with rig.client.get(rig.url + "/", headers={"Host": "nobody.test"}) as reply:
        assert reply.status == 404
        assert "default backend" in await reply.text()
    assert rig.upstream.transports == []
