"""The workstation preview server against a real ingress stand-in (real sockets, real TLS).

Covers:
- a request through the preview URL reaches the ingress with the intercept's
  header (and the user's extra headers, replacing what the client sent);
  the same request sent directly to the ingress carries no such header;
- Host is the L5 hostname over HTTP; over HTTPS, SNI and Host are the L5
  hostname and the certificate is verified;
- a wrong CA fails clearly (502 naming TLS verification), nothing is forwarded;
- bodies are streamed both ways (the first chunk arrives before the upstream
  sends the rest; an upload's first chunk reaches the ingress before the
  client sends the rest), and a large body arrives intact;
- WebSocket upgrades are carried (handshake headers added, messages echoed,
  over HTTP and HTTPS);
- revoked tokens, ended intercepts and unknown tokens answer a 404 page
  (HTML for browsers, text otherwise) at once; revoking also ends what is in
  flight: an open WebSocket is closed (4404), a streamed body cut off;
- a redirect to the L5 hostname stays on the preview URL, others are kept;
- the path scheme (``/.preview/<token>/...``) strips its prefix and sets a
  cookie that routes a browser's follow-up requests, and our cookie is never
  forwarded while others are; LAN servers hand out path URLs;
- URLs carry a >= 128-bit token and are listed with their intercept.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import trustme

from core.preview_models import TOKEN_RE, PreviewEntry, PreviewTarget
from core.preview_server import PreviewServer, find_token
from tests.preview.conftest import direct_dial
from tests.preview.ingress import CHUNK, HOSTNAME, FakeIngress

HEADER = {"x-waylay-intercept-id": "abc123:orders-shop"}
HTTP_TARGET = PreviewTarget(host="ingress.ingress", port=80, tls=False, hostname=HOSTNAME)
HTTPS_TARGET = PreviewTarget(host="ingress.ingress", port=443, tls=True, hostname=HOSTNAME)


def host_of(server: PreviewServer, entry: PreviewEntry) -> str:
    return f"{entry.token}.preview.localhost:{server.port}"


def base(server: PreviewServer) -> str:
    return f"http://127.0.0.1:{server.port}"


async def fetch(
    http: aiohttp.ClientSession,
    server: PreviewServer,
    entry: PreviewEntry,
    path: str,
    **kwargs: Any,
) -> tuple[int, Any]:
    headers = {"Host": host_of(server, entry), **kwargs.pop("headers", {})}
    async with http.request(
        kwargs.pop("method", "GET"), base(server) + path, headers=headers, **kwargs
    ) as resp:
        body = await resp.read()
        try:
            return resp.status, json.loads(body)
        except ValueError:
            return resp.status, body.decode()


async def test_header_added_through_preview_not_directly(
    preview: PreviewServer, ingress: FakeIngress, http: aiohttp.ClientSession
) -> None:
    entry = preview.create("abc123:orders-shop", HTTP_TARGET, HEADER)
    status, seen = await fetch(http, preview, entry, "/echo/orders?x=1")
    assert status == 200
    assert seen["headers"]["x-waylay-intercept-id"] == "abc123:orders-shop"
    assert seen["host"] == HOSTNAME
    assert seen["path"] == "/echo/orders?x=1"
    assert seen["headers"]["x-forwarded-host"] == host_of(preview, entry)
    async with http.get(f"http://127.0.0.1:{ingress.http_port}/echo/orders") as resp:
        direct = await resp.json()
    assert "x-waylay-intercept-id" not in direct["headers"]


async def test_extra_headers_replace_client_ones(
    preview: PreviewServer, http: aiohttp.ClientSession
) -> None:
    entry = preview.create("abc123:orders-shop", HTTP_TARGET, {**HEADER, "X-Tenant": "blue"})
    _, seen = await fetch(
        http,
        preview,
        entry,
        "/echo",
        headers={"x-waylay-intercept-id": "forged", "X-Tenant": "red", "X-Other": "kept"},
    )
    assert seen["headers"]["x-waylay-intercept-id"] == "abc123:orders-shop"
    assert seen["headers"]["x-tenant"] == "blue"
    assert seen["headers"]["x-other"] == "kept"


async def test_tls_sets_sni_and_host_and_verifies(
    preview: PreviewServer, ingress: FakeIngress, http: aiohttp.ClientSession
) -> None:
    entry = preview.create("abc123:orders-shop", HTTPS_TARGET, HEADER)
    status, seen = await fetch(http, preview, entry, "/echo")
    assert status == 200
    assert seen["tls"] is True
    assert seen["host"] == HOSTNAME
    assert ingress.sni and ingress.sni[-1] == HOSTNAME
    assert seen["headers"]["x-waylay-intercept-id"] == "abc123:orders-shop"


async def test_wrong_ca_fails_clearly(ingress: FakeIngress, http: aiohttp.ClientSession) -> None:
    other = ssl.create_default_context()
    trustme.CA().configure_trust(other)
    server = PreviewServer(direct_dial(ingress), ssl_context=other)
    async with anyio.create_task_group() as tg:
        await tg.start(server.run)
        entry = server.create("abc123:orders-shop", HTTPS_TARGET, HEADER)
        status, text = await fetch(http, server, entry, "/echo")
        tg.cancel_scope.cancel()
    assert status == 502
    assert "TLS verification of the ingress ingress.ingress:443 failed" in text
    assert "--preview-ca" in text


async def test_wrong_hostname_for_certificate_fails(
    preview: PreviewServer, http: aiohttp.ClientSession
) -> None:
    target = HTTPS_TARGET.model_copy(update={"hostname": "other.example.test"})
    entry = preview.create("abc123:orders-shop", target, HEADER)
    status, text = await fetch(http, preview, entry, "/echo")
    assert status == 502
    assert "TLS verification" in text


async def test_response_streamed_not_buffered(
    preview: PreviewServer, ingress: FakeIngress, http: aiohttp.ClientSession
) -> None:
    entry = preview.create("abc123:orders-shop", HTTP_TARGET, HEADER)
    size = 8 * CHUNK
    headers = {"Host": host_of(preview, entry)}
    async with http.get(f"{base(preview)}/stream?size={size}", headers=headers) as resp:
        assert resp.status == 200
        first = b""
        with anyio.fail_after(10):
            while len(first) < CHUNK:
                first += await resp.content.readany()
        assert first[:CHUNK] == b"a" * CHUNK  # arrived while the ingress still holds the rest
        ingress.release.set()
        rest = await resp.read()
    assert len(first) + len(rest) == size


async def test_request_body_streamed(
    preview: PreviewServer, ingress: FakeIngress, http: aiohttp.ClientSession
) -> None:
    entry = preview.create("abc123:orders-shop", HTTP_TARGET, HEADER)
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        chunk = b"x" * CHUNK
        digest.update(chunk)
        yield chunk
        with anyio.fail_after(10):
            await ingress.first_chunk.wait()  # the ingress saw it before we send more
        for i in range(15):
            chunk = bytes([i]) * CHUNK
            digest.update(chunk)
            yield chunk

    status, seen = await fetch(http, preview, entry, "/upload", method="POST", data=body())
    assert status == 200
    assert seen == {"size": 16 * CHUNK, "sha256": digest.hexdigest()}


async def test_large_bodies_intact(preview: PreviewServer, http: aiohttp.ClientSession) -> None:
    entry = preview.create("abc123:orders-shop", HTTPS_TARGET, HEADER)
    payload = bytes(range(256)) * (24 * 1024 * 4)  # 24 MiB
    status, seen = await fetch(http, preview, entry, "/echo/up", method="PUT", data=payload)
    assert status == 200
    assert seen["size"] == len(payload)
    assert seen["sha256"] == hashlib.sha256(payload).hexdigest()


async def _websocket_roundtrip(
    http: aiohttp.ClientSession, server: PreviewServer, entry: PreviewEntry
) -> None:
    url = f"ws://127.0.0.1:{server.port}/ws"
    async with http.ws_connect(
        url, headers={"Host": host_of(server, entry)}, protocols=("chat",)
    ) as ws:
        assert ws.protocol == "chat"
        with anyio.fail_after(10):
            hello = await ws.receive_json()
            assert hello["headers"]["x-waylay-intercept-id"] == "abc123:orders-shop"
            assert hello["headers"]["host"] == HOSTNAME
            await ws.send_str("hi")
            assert await ws.receive_str() == "echo:hi"
            await ws.send_bytes(b"\x00\x01")
            assert await ws.receive_bytes() == b"echo:\x00\x01"


async def test_websocket_carried(preview: PreviewServer, http: aiohttp.ClientSession) -> None:
    await _websocket_roundtrip(http, preview, preview.create("abc123:o", HTTP_TARGET, HEADER))


async def test_websocket_carried_over_tls(
    preview: PreviewServer, ingress: FakeIngress, http: aiohttp.ClientSession
) -> None:
    await _websocket_roundtrip(http, preview, preview.create("abc123:o", HTTPS_TARGET, HEADER))
    assert ingress.sni[-1] == HOSTNAME


async def test_revoked_and_ended_answer_404(
    preview: PreviewServer, http: aiohttp.ClientSession
) -> None:
    one = preview.create("abc123:orders-shop", HTTP_TARGET, HEADER)
    two = preview.create("abc123:orders-shop", HTTP_TARGET, HEADER)
    other = preview.create("abc123:catalog-shop", HTTP_TARGET, HEADER)
    assert (await fetch(http, preview, one, "/echo"))[0] == 200

    assert preview.revoke(one.token) is not None
    status, text = await fetch(http, preview, one, "/echo")
    assert status == 404
    assert "revoked" in text
    assert (await fetch(http, preview, two, "/echo"))[0] == 200

    assert [e.token for e in preview.end_intercept("abc123:orders-shop")] == [two.token]
    assert (await fetch(http, preview, two, "/echo"))[0] == 404
    assert (await fetch(http, preview, other, "/echo"))[0] == 200
    assert preview.revoke(one.token) is None


async def test_dead_page_is_html_for_browsers(
    preview: PreviewServer, http: aiohttp.ClientSession
) -> None:
    headers = {"Host": f"{'a' * 32}.preview.localhost", "Accept": "text/html,*/*"}
    async with http.get(base(preview) + "/", headers=headers) as resp:
        assert resp.status == 404
        assert resp.content_type == "text/html"
        assert "Preview not available" in await resp.text()
    async with http.get(base(preview) + "/", headers={"Host": "localhost"}) as resp:
        assert resp.status == 404


async def test_path_scheme_and_cookie(preview: PreviewServer, http: aiohttp.ClientSession) -> None:
    entry = preview.create("abc123:orders-shop", HTTP_TARGET, HEADER)
    url = f"{base(preview)}/.preview/{entry.token}/echo/a?b=1"
    async with http.get(url) as resp:
        seen = await resp.json()
        cookie = resp.headers["Set-Cookie"]
    assert seen["path"] == "/echo/a?b=1"
    assert seen["headers"]["x-waylay-intercept-id"] == "abc123:orders-shop"
    assert cookie.startswith(f"waylay-preview={entry.token};")
    assert "HttpOnly" in cookie

    # A browser's next request for an absolute link carries only the cookie.
    headers = {"Cookie": f"session=s1; waylay-preview={entry.token}"}
    async with http.get(f"{base(preview)}/app.js", headers=headers) as resp:
        seen = await resp.json()
    assert seen["path"] == "/app.js"
    assert seen["headers"]["cookie"] == "session=s1"
    assert seen["headers"]["x-waylay-intercept-id"] == "abc123:orders-shop"

    preview.revoke(entry.token)
    async with http.get(f"{base(preview)}/app.js", headers=headers) as resp:
        assert resp.status == 404


async def test_urls_tokens_and_listing(preview: PreviewServer, ingress: FakeIngress) -> None:
    a = preview.create("abc123:orders-shop", HTTP_TARGET, HEADER)
    b = preview.create("abc123:catalog-shop", HTTPS_TARGET, HEADER)
    assert a.url == f"http://{a.token}.preview.localhost:{preview.port}/"
    assert TOKEN_RE.fullmatch(a.token) and a.token != b.token
    assert len(a.token) * 5 >= 128
    assert [e.intercept_id for e in preview.entries()] == [
        "abc123:orders-shop",
        "abc123:catalog-shop",
    ]
    assert [e.token for e in preview.entries("abc123:catalog-shop")] == [b.token]

    lan = PreviewServer(direct_dial(ingress), host="127.0.0.1", advertise="192.0.2.7")
    lan.host = "0.0.0.0"
    lan.port = 4242
    entry = lan.create("abc123:orders-shop", HTTP_TARGET, HEADER)
    assert entry.url == f"http://192.0.2.7:4242/.preview/{entry.token}/"


def test_find_token() -> None:
    token = "b" * 32
    assert find_token(f"{token}.preview.localhost:8000", "/x?y") == (token, "/x?y", "host")
    assert find_token("h:1", f"/.preview/{token}") == (token, "/", "path")
    assert find_token("h:1", f"/.preview/{token}?q=1") == (token, "/?q=1", "path")
    assert find_token("h:1", f"/.preview/{token}/a/b?q") == (token, "/a/b?q", "path")
    assert find_token("h:1", "/a", f"waylay-preview={token}") == (token, "/a", "cookie")
    assert find_token("h:1", "/.preview/short/") is None
    assert find_token("h:1", "/a", 'bad"cookie') is None
    assert find_token("UPPERCASE" * 4, "/") is None


async def test_revoke_closes_open_websocket(
    preview: PreviewServer, http: aiohttp.ClientSession
) -> None:
    entry = preview.create("abc123:o", HTTP_TARGET, HEADER)
    async with http.ws_connect(
        f"ws://127.0.0.1:{preview.port}/ws", headers={"Host": host_of(preview, entry)}
    ) as ws:
        with anyio.fail_after(10):
            await ws.receive_json()
            preview.end_intercept("abc123:o")
            message = await ws.receive()
    assert message.type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 4404


async def test_revoke_cuts_streamed_body(
    preview: PreviewServer, ingress: FakeIngress, http: aiohttp.ClientSession
) -> None:
    entry = preview.create("abc123:o", HTTP_TARGET, HEADER)
    headers = {"Host": host_of(preview, entry)}
    async with http.get(f"{base(preview)}/stream?size={8 * CHUNK}", headers=headers) as resp:
        with anyio.fail_after(10):
            assert await resp.content.readany()
            preview.revoke(entry.token)
            try:
                await resp.read()
            except aiohttp.ClientError:
                cut = True
            else:
                cut = False
    ingress.release.set()
    assert cut, "the body of a revoked preview must not complete"


async def test_redirect_stays_on_preview(
    preview: PreviewServer, http: aiohttp.ClientSession
) -> None:
    entry = preview.create("abc123:o", HTTPS_TARGET, HEADER)
    host = host_of(preview, entry)
    for to, expected in (
        (f"https://{HOSTNAME}/login?next=/a", f"http://{host}/login?next=/a"),
        ("https://elsewhere.test/x", "https://elsewhere.test/x"),
        ("/relative", "/relative"),
    ):
        async with http.get(
            f"{base(preview)}/redirect",
            params={"to": to},
            headers={"Host": host},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 302
            assert resp.headers["Location"] == expected
