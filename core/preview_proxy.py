"""Forwarding one preview request to the ingress (shared by both preview servers).

For a live token the request goes to the entry's ingress target at the
address ``dial`` returns (a port-forward on the workstation, the Service's
ClusterIP in the cluster):

- over TLS when the target says so, verified against ``ssl_context`` with SNI
  set to the L5 hostname; ``Host`` is the L5 hostname either way;
- with the entry's headers added (replacing any the client sent under those
  names), ``X-Forwarded-Host``/``-Proto`` describing the preview URL;
- request and response bodies streamed chunk by chunk, never buffered;
- WebSocket upgrades carried message by message;
- a redirect to the L5 hostname itself is rewritten to stay on the preview.

When a token dies (``cut``), its in-flight exchanges end at once: a streamed
body is cut off (the connection aborted) and a WebSocket closed with 4404.

A dead token gets a 404 page that says so; an ingress that cannot be reached
or fails TLS verification a 502 that says which and what to do.
"""

from __future__ import annotations

import html
import ssl
from collections.abc import Awaitable, Callable, Iterable

import aiohttp
import anyio
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from core.preview_models import PreviewEntry, PreviewTarget

__all__ = ["CONNECT_TIMEOUT", "Dial", "PreviewForwarder", "dead_page"]

CONNECT_TIMEOUT = 15.0
WS_GONE = 4404
"""WebSocket close code sent when the preview URL dies under an open socket."""

Dial = Callable[[PreviewTarget], Awaitable[tuple[str, int]]]
"""Where to connect for a target: ``(host, port)``."""

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


def _wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def dead_page(request: web.Request, what: str = "This preview URL") -> web.Response:
    """404: the token is unknown, revoked, or its intercept ended."""
    title = "Preview not available"
    message = (
        f"{what} is not active: its intercept has ended or the link was revoked "
        "(or it never existed). Ask the person who shared it for a new one."
    )
    if _wants_html(request):
        body = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{title}</title></head><body><h1>404 &mdash; {title}</h1>"
            f"<p>{html.escape(message)}</p><p><small>waylay</small></p></body></html>"
        )
        return web.Response(status=404, text=body, content_type="text/html")
    return web.Response(status=404, text=f"404 {title}\n{message}\n")


def _bad_gateway(request: web.Request, title: str, detail: str, hint: str) -> web.Response:
    if _wants_html(request):
        body = (
            f"<!doctype html><html><head><title>{html.escape(title)}</title></head><body>"
            f"<h1>502 &mdash; {html.escape(title)}</h1><pre>{html.escape(detail)}</pre>"
            f"<p>{html.escape(hint)}</p></body></html>"
        )
        return web.Response(status=502, text=body, content_type="text/html")
    return web.Response(status=502, text=f"502 {title}\n{detail}\n{hint}\n")


class PreviewForwarder:
    """Sends requests for preview entries to their ingress."""

    def __init__(self, dial: Dial, ssl_context: ssl.SSLContext | None = None) -> None:
        self.dial = dial
        self.ssl_context = ssl_context or ssl.create_default_context()
        self._client: aiohttp.ClientSession | None = None
        self._live: dict[str, set[anyio.CancelScope]] = {}
        """In-flight exchanges (streamed bodies, WebSockets) by token."""

    @property
    def client(self) -> aiohttp.ClientSession:
        if self._client is None:
            self._client = aiohttp.ClientSession(
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
            )
        return self._client

    def cut(self, entries: Iterable[PreviewEntry]) -> None:
        """End the in-flight exchanges of dead tokens now (bodies cut, WebSockets closed)."""
        for entry in entries:
            for scope in self._live.pop(entry.token, set()):
                scope.cancel()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _headers(
        self, request: web.Request, entry: PreviewEntry, drop_cookie: str = ""
    ) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in request.headers.items():
            if name.lower() in HOP_BY_HOP or name.lower() in {k.lower() for k in entry.headers}:
                continue
            if drop_cookie and name.lower() == "cookie":
                value = _without_cookie(value, drop_cookie)
                if not value:
                    continue
            headers.add(name, value)
        headers["Host"] = entry.target.l5_hostname
        headers["X-Forwarded-Host"] = request.host
        headers["X-Forwarded-Proto"] = request.scheme
        for name, value in entry.headers.items():
            headers[name] = value
        return headers

    async def forward(
        self,
        request: web.Request,
        entry: PreviewEntry,
        path_qs: str,
        *,
        drop_cookie: str = "",
        set_cookie: str = "",
    ) -> web.StreamResponse:
        """Send ``request`` (for ``path_qs``) to ``entry``'s ingress and stream the answer.

        ``drop_cookie`` names a cookie of ours to remove from what is forwarded;
        ``set_cookie`` is a ``Set-Cookie`` value added to the answer.
        """
        scope = anyio.CancelScope()
        self._live.setdefault(entry.token, set()).add(scope)
        try:
            return await self._forward(request, entry, path_qs, drop_cookie, set_cookie, scope)
        finally:
            live = self._live.get(entry.token)
            if live is not None:
                live.discard(scope)
                if not live:
                    del self._live[entry.token]

    async def _forward(
        self,
        request: web.Request,
        entry: PreviewEntry,
        path_qs: str,
        drop_cookie: str,
        set_cookie: str,
        scope: anyio.CancelScope,
    ) -> web.StreamResponse:
        target = entry.target
        try:
            with anyio.fail_after(CONNECT_TIMEOUT):
                host, port = await self.dial(target)
        except Exception as exc:
            return _bad_gateway(
                request,
                f"Cannot reach the ingress {target.host}:{target.port}",
                f"{type(exc).__name__}: {exc}",
                "Check the ingress answers of the preview (host, port) and that the cluster "
                "is reachable.",
            )
        headers = self._headers(request, entry, drop_cookie)
        tls = self.ssl_context if target.tls else None
        server_hostname = target.l5_hostname if target.tls else None
        if request.headers.get("Upgrade", "").lower() == "websocket":
            scheme = "wss" if target.tls else "ws"
            url = f"{scheme}://{host}:{port}{path_qs}"
            return await self._websocket(request, target, url, headers, tls, server_hostname, scope)
        url = f"{'https' if target.tls else 'http'}://{host}:{port}{path_qs}"
        try:
            upstream = await self.client.request(
                request.method,
                url,
                headers=headers,
                data=request.content if request.body_exists else None,
                allow_redirects=False,
                ssl=tls if tls is not None else False,
                server_hostname=server_hostname,
            )
        except aiohttp.ClientError as exc:
            return self._connect_failed(request, target, exc)
        async with upstream:
            out = CIMultiDict(
                (k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP
            )
            if "Location" in out:
                out["Location"] = _local_location(out["Location"], request, entry)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            response.headers.extend(out)
            if set_cookie:
                response.headers.add("Set-Cookie", set_cookie)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            with scope:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            if scope.cancel_called:
                # The token died mid-body: the client must not take it as complete.
                if request.transport is not None:
                    request.transport.abort()
                return response
            await response.write_eof()
        return response

    def _connect_failed(
        self, request: web.Request, target: PreviewTarget, exc: aiohttp.ClientError
    ) -> web.Response:
        where = f"{target.host}:{target.port}"
        if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
            return _bad_gateway(
                request,
                f"TLS verification of the ingress {where} failed",
                f"{exc} (SNI {target.l5_hostname})",
                "The ingress's certificate is not trusted for that hostname: give the CA "
                "that signed it (--preview-ca FILE), fix the L5 hostname, or answer TLS: no.",
            )
        return _bad_gateway(
            request,
            f"The ingress {where} did not answer",
            f"{type(exc).__name__}: {exc}",
            "Check the ingress port and TLS answers of the preview.",
        )

    async def _websocket(
        self,
        request: web.Request,
        target: PreviewTarget,
        url: str,
        headers: CIMultiDict[str],
        tls: ssl.SSLContext | None,
        server_hostname: str | None,
        scope: anyio.CancelScope,
    ) -> web.StreamResponse:
        for name in [k for k in headers if k.lower().startswith("sec-websocket")]:
            headers.popall(name)
        protocols = [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p
        ]
        try:
            upstream = await self.client.ws_connect(
                url,
                headers=headers,
                protocols=protocols,
                ssl=tls if tls is not None else False,
                server_hostname=server_hostname,
                autoping=True,
            )
        except aiohttp.WSServerHandshakeError as exc:
            return web.Response(status=exc.status or 502, text=f"WebSocket refused: {exc}\n")
        except aiohttp.ClientError as exc:
            return self._connect_failed(request, target, exc)
        downstream = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else ()
        )
        await downstream.prepare(request)

        async def pipe(
            source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
            sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        ) -> None:
            async for message in source:
                if message.type == WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type == WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
            await sink.close(code=source.close_code or 1000)

        try:
            with scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(pipe, downstream, upstream)
                    tg.start_soon(pipe, upstream, downstream)
        finally:
            with anyio.CancelScope(shield=True):
                await upstream.close()
                if scope.cancel_called:
                    await downstream.close(code=WS_GONE, message=b"preview URL no longer active")
        return downstream


def _local_location(location: str, request: web.Request, entry: PreviewEntry) -> str:
    """A redirect to the L5 hostname itself stays on the preview URL."""
    url = URL(location)
    if not url.is_absolute() or (url.host or "").lower() != entry.target.l5_hostname.lower():
        return location
    return str(URL.build(scheme=request.scheme, authority=request.host).join(url.relative()))


def _without_cookie(header: str, name: str) -> str:
    parts = [p.strip() for p in header.split(";")]
    return "; ".join(p for p in parts if p and p.split("=", 1)[0].strip() != name)
