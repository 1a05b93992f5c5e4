"""The workstation preview server: preview URLs served from the user's machine.

Used when the manager has no preview domain. An aiohttp server on the
loopback (default) or a LAN address, reaching the ingress through ``dial``
(``core.preview_dial.PortForwardDial`` in production). Three ways to name a
token, all accepted:

- **Host**: ``http://<token>.preview.localhost:PORT/...``: the URL handed out
  on the loopback (browsers and curl resolve ``*.localhost`` to it);
- **path**: ``http://ADDRESS:PORT/.preview/<token>/...``: the URL handed out
  on a LAN address (no DNS needed); the prefix is removed before forwarding
  and the answer sets the cookie ``waylay-preview=<token>`` (``Path=/``), so
- **cookie**: a browser's follow-up requests for absolute links (``/app.js``)
  still reach the same preview.

Our cookie is never forwarded. Unknown, revoked and ended tokens get a 404
page at once (``revoke``, ``end_intercept``), and what they still had in
flight ends (an open WebSocket is closed, a streamed body cut off).
"""

from __future__ import annotations

import ipaddress
import ssl
from http.cookies import CookieError, SimpleCookie

import anyio
import anyio.abc
from aiohttp import web

from core.preview_models import TOKEN_RE, PreviewEntry, PreviewTarget
from core.preview_proxy import Dial, PreviewForwarder, dead_page
from core.preview_table import PreviewTable

__all__ = ["COOKIE", "PATH_PREFIX", "PreviewServer", "find_token"]

PATH_PREFIX = "/.preview/"
COOKIE = "waylay-preview"
LOOPBACK_DOMAIN = "preview.localhost"


def find_token(host: str, path_qs: str, cookie_header: str = "") -> tuple[str, str, str] | None:
    """``(token, path to forward, how)`` named by a request; ``how`` is host/path/cookie."""
    label = host.split(":", 1)[0].split(".", 1)[0].lower()
    if TOKEN_RE.fullmatch(label):
        return label, path_qs, "host"
    if path_qs.startswith(PATH_PREFIX):
        rest = path_qs[len(PATH_PREFIX) :]
        token, sep, tail = rest.partition("/")
        token, query_sep, query = token.partition("?")
        if TOKEN_RE.fullmatch(token):
            forwarded = "/" + tail if sep else "/"
            return token, forwarded + (query_sep + query if query_sep else ""), "path"
    if cookie_header:
        try:
            jar = SimpleCookie(cookie_header)
        except CookieError:
            return None
        morsel = jar.get(COOKIE)
        if morsel is not None and TOKEN_RE.fullmatch(morsel.value):
            return morsel.value, path_qs, "cookie"
    return None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class PreviewServer:
    """Serves preview URLs; ``await tg.start(server.run)`` returns the bound port."""

    def __init__(
        self,
        dial: Dial,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        advertise: str = "",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``advertise``: the address put in LAN URLs (default ``host``)."""
        self.host = host
        self.port = port
        self.advertise = advertise or host
        self.forwarder = PreviewForwarder(dial, ssl_context)
        self.table = PreviewTable(self.url_for, on_dead=self.forwarder.cut)

    # ------------------------------------------------------------ the table

    def url_for(self, token: str) -> str:
        if _is_loopback(self.host):
            return f"http://{token}.{LOOPBACK_DOMAIN}:{self.port}/"
        return f"http://{self.advertise}:{self.port}{PATH_PREFIX}{token}/"

    def create(
        self, intercept_id: str, target: PreviewTarget, headers: dict[str, str]
    ) -> PreviewEntry:
        """A new preview URL for an intercept (see ``core.preview_table.intercept_headers``)."""
        if not self.port:
            raise RuntimeError("start the preview server before creating URLs")
        return self.table.add(intercept_id, target, headers)

    def revoke(self, token: str) -> PreviewEntry | None:
        return self.table.revoke(token)

    def end_intercept(self, intercept_id: str) -> list[PreviewEntry]:
        return self.table.end_intercept(intercept_id)

    def entries(self, intercept_id: str | None = None) -> list[PreviewEntry]:
        return self.table.entries(intercept_id)

    # ------------------------------------------------------------ serving

    async def handle(self, request: web.Request) -> web.StreamResponse:
        found = find_token(request.host, request.raw_path, request.headers.get("Cookie", ""))
        if found is None:
            return dead_page(request, "This address")
        token, path_qs, how = found
        entry = self.table.get(token)
        if entry is None:
            return dead_page(request)
        cookie = ""
        if how == "path":
            cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax"
        return await self.forwarder.forward(
            request, entry, path_qs, drop_cookie=COOKIE, set_cookie=cookie
        )

    def app(self) -> web.Application:
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            self.port = int(runner.addresses[0][1])
            task_status.started(self.port)
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await self.forwarder.close()
                await runner.cleanup()
