"""``waylay/demo-ingress``: an ingress controller for the sandbox.

It watches Ingresses, Services and Secrets through the API (as its service
account, with ``$KUBECONFIG``), and serves on the pod's address:

- HTTP on ``$HTTP_PORT`` (default 8080) and HTTPS on ``$HTTPS_PORT`` (8443),
  the certificate chosen by SNI from the ``kubernetes.io/tls`` Secrets that
  Ingresses name in ``spec.tls`` (a self-signed one otherwise);
- each request goes to the Service its Host and path select (see
  :mod:`sandbox.images.ingress_routes`), at the Service's ClusterIP, with the
  ``X-Forwarded-*`` headers; bodies are streamed both ways and WebSocket
  upgrades are carried;
- like nginx (``keepalive 32``, ``keepalive_timeout 60s``) it keeps a pool of
  keep-alive upstream connections per Service and reuses them across requests
  and clients: up to 32 idle ones per Service, each closed after 60 s unused
  (connections in use are not limited). So an intercept made while traffic
  flows meets connections opened before it existed, as with a real ingress;
- with ``$PUBLISH_SERVICE`` (``namespace/name`` of its LoadBalancer Service) it
  writes that Service's address into each Ingress's ``status.loadBalancer``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import tempfile
import time
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest, ConnectionKey
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from core.certs import make_ca
from sandbox.images._app import env_port, log, pod_ip, wait_for_stop
from sandbox.images._kubeapi import ApiCallError, Informer, KubeApi
from sandbox.images.ingress_routes import host_matches, resolve_service, route

Obj = dict[str, Any]

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
}


class Controller:
    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self.ingresses = Informer(api, "/apis/networking.k8s.io/v1/ingresses", self._changed)
        self.services = Informer(api, "/api/v1/services", self._changed)
        self.secrets = Informer(api, "/api/v1/secrets", self._changed)
        self.pools = UpstreamPools()
        self.proxy = Proxy(self._upstream, self.pools)
        self._certs_dir = Path(tempfile.mkdtemp(prefix="ingress-certs-", dir=os.getcwd()))
        self._contexts: dict[str, ssl.SSLContext] = {}
        self.default_context = self._default_context()
        self._dirty = asyncio.Event()

    # ------------------------------------------------------------------ TLS

    def _default_context(self) -> ssl.SSLContext:
        ca = make_ca("waylay-ingress-default")
        cert, key = ca.issue_server_cert(["ingress.local"])
        return self._context("default", cert + ca.cert_pem, key)

    def _context(self, name: str, cert: bytes, key: bytes) -> ssl.SSLContext:
        cert_file, key_file = self._certs_dir / f"{name}.crt", self._certs_dir / f"{name}.key"
        cert_file.write_bytes(cert)
        key_file.write_bytes(key)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        return context

    def _rebuild_tls(self) -> None:
        contexts: dict[str, ssl.SSLContext] = {}
        for (namespace, _), ingress in sorted(self.ingresses.objects.items()):
            for tls in (ingress.get("spec") or {}).get("tls") or []:
                secret = self.secrets.objects.get((namespace, str(tls.get("secretName", ""))))
                data = (secret or {}).get("data") or {}
                if "tls.crt" not in data or "tls.key" not in data:
                    continue
                try:
                    context = self._context(
                        f"{namespace}-{tls['secretName']}",
                        base64.b64decode(data["tls.crt"]),
                        base64.b64decode(data["tls.key"]),
                    )
                except (ssl.SSLError, ValueError) as exc:
                    log(f"secret {namespace}/{tls['secretName']}: unusable certificate: {exc}")
                    continue
                for host in tls.get("hosts") or []:
                    contexts.setdefault(str(host).lower(), context)
        self._contexts = contexts

    def sni(self, sslobj: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        if not server_name:
            return
        name = server_name.lower()
        for host, context in self._contexts.items():
            if host_matches(host, name) >= 2:
                sslobj.context = context
                return

    # ------------------------------------------------------------- changes

    def _changed(self) -> None:
        self._dirty.set()

    async def reconcile_forever(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            self._rebuild_tls()
            await self.pools.retain({f"{ns}/{name}" for ns, name in self.services.objects})
            await self._publish_status()

    async def _publish_status(self) -> None:
        publish = os.environ.get("PUBLISH_SERVICE", "")
        if "/" not in publish:
            return
        namespace, name = publish.split("/", 1)
        service = self.services.objects.get((namespace, name))
        ingress = ((service or {}).get("status") or {}).get("loadBalancer", {}).get("ingress")
        if not ingress:
            return
        wanted = {"ingress": [{"ip": ingress[0]["ip"]}]}
        for (ns, ing_name), obj in list(self.ingresses.objects.items()):
            if (obj.get("status") or {}).get("loadBalancer") == wanted:
                continue
            obj = {**obj, "status": {"loadBalancer": wanted}}
            path = f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/{ing_name}/status"
            with contextlib.suppress(ApiCallError, aiohttp.ClientError):
                await self.api.request("PUT", path, obj)

    # --------------------------------------------------------------- proxy

    def _upstream(self, request: web.Request) -> tuple[str, tuple[str, int]] | web.Response:
        backend = route(list(self.ingresses.objects.values()), request.host, request.path)
        if backend is None:
            return web.Response(status=404, text="default backend - 404\n")
        service = self.services.objects.get((backend.namespace, backend.service))
        target = resolve_service(service, backend.port)
        if target is None:
            return web.Response(
                status=503,
                text=f"503: service {backend.namespace}/{backend.service} port "
                f"{backend.port} is not available\n",
            )
        return f"{backend.namespace}/{backend.service}", target


KEEPALIVE = 32
"""Idle upstream connections kept per Service (nginx's ``keepalive 32``)."""
KEEPALIVE_TIMEOUT = 60.0
"""Seconds an idle upstream connection is kept (nginx's ``keepalive_timeout 60s``)."""

_upstream_port: ContextVar[int | None] = ContextVar("upstream_port", default=None)
"""The local port of the upstream connection the current request got (for the access log)."""

Pick = Callable[[web.Request], "tuple[str, tuple[str, int]] | web.Response"]
"""A request's upstream: ``(service name, (ip, port))``, or the answer to give instead."""


class KeepaliveConnector(aiohttp.TCPConnector):
    """Any number of connections in use; at most ``idle`` kept idle per upstream
    address (the oldest idle one is closed first), each for ``timeout`` seconds."""

    def __init__(self, idle: int, timeout: float) -> None:
        super().__init__(limit=0, keepalive_timeout=timeout)
        self.idle = idle

    async def connect(
        self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        connection = await super().connect(req, traces, timeout)
        transport = connection.transport
        sockname = transport.get_extra_info("sockname") if transport is not None else None
        _upstream_port.set(int(sockname[1]) if sockname else None)
        return connection

    def _release(
        self, key: ConnectionKey, protocol: ResponseHandler, *, should_close: bool = False
    ) -> None:
        # aiohttp has no idle cap: trim its idle list (``_conns``, oldest first) here;
        # tests/sandbox_runtime/test_ingress_pooling.py fails if aiohttp changes this
        super()._release(key, protocol, should_close=should_close)
        idle = self._conns.get(key)
        while idle is not None and len(idle) > self.idle:
            oldest, _ = idle.popleft()
            oldest.close()


class UpstreamPools:
    """One keep-alive connection pool (an aiohttp session) per Service."""

    def __init__(self, keepalive: int = KEEPALIVE, timeout: float = KEEPALIVE_TIMEOUT) -> None:
        self.keepalive = keepalive
        self.timeout = timeout
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def session(self, service: str) -> aiohttp.ClientSession:
        """The pool for ``service`` (``namespace/name``), made on first use."""
        session = self._sessions.get(service)
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
                connector=KeepaliveConnector(self.keepalive, self.timeout),
            )
            self._sessions[service] = session
        return session

    async def retain(self, services: set[str]) -> None:
        """Close the pools of Services not in ``services`` (deleted ones)."""
        for name in [n for n in self._sessions if n not in services]:
            await self._sessions.pop(name).close()

    async def close(self) -> None:
        await self.retain(set())


class Proxy:
    """Forwards each request to the upstream ``pick`` names, over ``pools``."""

    def __init__(self, pick: Pick, pools: UpstreamPools) -> None:
        self.pick = pick
        self.pools = pools

    def _forward_headers(self, request: web.Request) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        client = request.remote or ""
        previous = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{previous}, {client}" if previous else client
        headers["X-Real-IP"] = client
        headers["X-Forwarded-Host"] = request.host
        headers["X-Forwarded-Proto"] = request.scheme
        return headers

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        found = self.pick(request)
        if isinstance(found, web.Response):
            self._access(request, found.status, "-", started)
            return found
        name, (ip, port) = found
        url = f"http://{ip}:{port}{request.path_qs}"
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, url, name, started)
        _upstream_port.set(None)
        try:
            upstream = await self.pools.session(name).request(
                request.method,
                url,
                headers=self._forward_headers(request),
                data=request.content if request.body_exists else None,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, OSError) as exc:
            self._access(request, 502, name, started)
            return web.Response(status=502, text=f"502: {name} did not answer: {exc}\n")
        via = _upstream_port.get()
        async with upstream:
            headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
            response = web.StreamResponse(status=upstream.status, headers=headers)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        self._access(request, upstream.status, name, started, via)
        return response

    async def _websocket(
        self, request: web.Request, url: str, name: str, started: float
    ) -> web.StreamResponse:
        headers = {
            k: v
            for k, v in self._forward_headers(request).items()
            if not k.lower().startswith("sec-websocket")
        }
        protocols = [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p
        ]
        try:
            upstream = await self.pools.session(name).ws_connect(
                url, headers=headers, protocols=protocols
            )
        except (aiohttp.ClientError, OSError) as exc:
            self._access(request, 502, name, started)
            return web.Response(status=502, text=f"502: {name} refused the WebSocket: {exc}\n")
        downstream = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else ()
        )
        await downstream.prepare(request)
        self._access(request, 101, name, started)

        async def pipe(
            source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
            sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        ) -> None:
            async for message in source:
                if message.type == WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type == WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
            await sink.close()

        await asyncio.gather(pipe(downstream, upstream), pipe(upstream, downstream))
        return downstream

    @staticmethod
    def _access(
        request: web.Request, status: int, backend: str, started: float, via: int | None = None
    ) -> None:
        """One access-log line; ``via``: the local port of the upstream connection
        used (a pooled connection shows the same port request after request)."""
        took = (time.monotonic() - started) * 1000
        log(
            f'{request.remote} "{request.method} {request.host}{request.path_qs}" '
            f"{status} -> {backend} {took:.1f}ms" + (f" via :{via}" if via else "")
        )


async def main() -> None:
    api = KubeApi()
    controller = Controller(api)
    tasks = [
        asyncio.create_task(informer.run())
        for informer in (controller.ingresses, controller.services, controller.secrets)
    ]
    tasks.append(asyncio.create_task(controller.reconcile_forever()))
    await asyncio.wait_for(
        asyncio.gather(*(i.synced.wait() for i in (controller.ingresses, controller.services))),
        timeout=60,
    )
    app = web.Application(client_max_size=0)
    app.router.add_route("*", "/{tail:.*}", controller.proxy.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host = pod_ip()
    http_port, https_port = env_port("HTTP_PORT", 8080), env_port("HTTPS_PORT", 8443)
    tls = controller.default_context
    tls.sni_callback = controller.sni
    await web.TCPSite(runner, host, http_port).start()
    await web.TCPSite(runner, host, https_port, ssl_context=tls).start()
    log(f"ingress controller serving http://{host}:{http_port} and https://{host}:{https_port}")
    await wait_for_stop()
    for task in tasks:
        task.cancel()
    await runner.cleanup()
    await controller.pools.close()
    await api.close()


if __name__ == "__main__":
    asyncio.run(main())
