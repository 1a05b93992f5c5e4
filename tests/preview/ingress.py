"""A stand-in ingress for the preview tests: a real aiohttp server, HTTP and HTTPS.

HTTPS uses a trustme CA's certificate for ``HOSTNAME`` and records the SNI of
every handshake. Endpoints:

- ``/echo...``: JSON of the method, path (with query), Host, headers and the
  body's size and SHA-256 (read as it streams);
- ``/stream``: sends one chunk, waits for ``release`` (set by the test), then
  the rest (``?size=N`` bytes in all): proves the proxy does not buffer;
- ``/upload``: reads the body, records when the first chunk arrived in
  ``first_chunk`` (so a test can hold back the rest), answers size and hash;
- ``/redirect?to=URL``: 302 to URL;
- ``/ws``: WebSocket; first message is the handshake's headers (JSON), then
  every message is echoed back prefixed with ``echo:``.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import trustme
from aiohttp import WSMsgType, web

HOSTNAME = "shop.example.test"
CHUNK = 64 * 1024


@dataclass
class FakeIngress:
    ca: trustme.CA
    http_port: int = 0
    https_port: int = 0
    sni: list[str | None] = field(default_factory=list)
    release: anyio.Event = field(default_factory=anyio.Event)
    first_chunk: anyio.Event = field(default_factory=anyio.Event)

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx

    # ---------------------------------------------------------------- app

    async def echo(self, request: web.Request) -> web.Response:
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        return web.json_response(
            {
                "method": request.method,
                "path": request.path_qs,
                "host": request.host,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "size": size,
                "sha256": digest.hexdigest(),
                "tls": request.secure,
            }
        )

    async def stream(self, request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("size", str(4 * CHUNK)))
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"a" * CHUNK)
        with anyio.fail_after(10):
            await self.release.wait()
        sent = CHUNK
        while sent < size:
            n = min(CHUNK, size - sent)
            await response.write(b"b" * n)
            sent += n
        await response.write_eof()
        return response

    async def upload(self, request: web.Request) -> web.Response:
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            if size == 0:
                self.first_chunk.set()
            digest.update(chunk)
            size += len(chunk)
        return web.json_response({"size": size, "sha256": digest.hexdigest()})

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("chat",))
        await ws.prepare(request)
        await ws.send_json({"headers": {k.lower(): v for k, v in request.headers.items()}})
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str("echo:" + message.data)
            elif message.type == WSMsgType.BINARY:
                await ws.send_bytes(b"echo:" + message.data)
        return ws

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    def app(self) -> web.Application:
        app = web.Application(client_max_size=0)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_route("*", "/stream", self.stream)
        app.router.add_route("*", "/upload", self.upload)
        app.router.add_get("/ws", self.ws)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        return app


@asynccontextmanager
async def fake_ingress() -> AsyncIterator[FakeIngress]:
    ca = trustme.CA()
    ingress = FakeIngress(ca)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOSTNAME).configure_cert(server_ctx)

    def on_sni(_obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        ingress.sni.append(name)

    server_ctx.sni_callback = on_sni
    runner = web.AppRunner(ingress.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        http = web.TCPSite(runner, "127.0.0.1", 0)
        await http.start()
        https = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await https.start()
        ingress.http_port = int(runner.addresses[0][1])
        ingress.https_port = int(runner.addresses[1][1])
        yield ingress
    finally:
        await runner.cleanup()
