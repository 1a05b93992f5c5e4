"""Personal (HTTP) intercepts through a real agent, app and client tunnel.

Covers: header-matched requests go to the workstation and unmatched ones to
the app over one reused app connection; `auto` headers; path prefix with the
query ignored; pipelined requests answered in order across both routes;
chunked request bodies; Expect: 100-continue; WebSocket upgrade taking over
the connection (to the app and to the workstation); non-HTTP bytes pass
through to the app and an HTTP/2 preface is answered as HTTP/2; events per request
(redacted headers, reasons for unmatched requests, watch-all metadata only);
fail-open when the tunnel closes; 502 when the workstation cannot be reached;
conflicting intercepts refused with the holder named.
"""

from __future__ import annotations

import asyncio

import aiohttp

from core.protocol import AUTO_HEADER, ErrorReply, PathRule, TrafficEvent
from core.tunnel import LocalTarget
from tests.agent.conftest import OTHER, SESSION, AgentEnv, intercept, wait_for
from tests.agent.httpclient import HttpConn, parse_raw_reply


def _events(client, **match) -> list[TrafficEvent]:  # type: ignore[no-untyped-def]
    out = [m for m in client.messages if isinstance(m, TrafficEvent)]
    return [e for e in out if all(getattr(e, k) == v for k, v in match.items())]


async def _personal(env: AgentEnv, workstation: tuple[str, int], **kw):  # type: ignore[no-untyped-def]
    info = intercept("mine", headers={"x-dev": "alice"}, **kw)
    env.apply(info)
    client = await env.connect(targets={info.id: LocalTarget(*workstation)})
    return info, client


async def test_header_match_and_reuse(agent_env: AgentEnv, workstation: tuple[str, int]) -> None:
    info, client = await _personal(agent_env, workstation)
    conn = await HttpConn.open(agent_env.http_port)
    r1 = await conn.request("/a")
    r2 = await conn.request("/b", headers={"x-dev": "alice", "authorization": "Bearer secret"})
    r3 = await conn.request("/c?x=1", headers={"x-dev": "bob"})
    conn.close()
    assert (r1.status, r1.text) == (200, "app:/a")
    assert (r2.status, r2.text) == (200, "workstation:/b")
    assert r3.text == "app:/c"
    # the two unmatched requests went over one app connection
    assert r1.headers["x-peer-port"] == r3.headers["x-peer-port"]
    await wait_for(lambda: _events(client, routed="workstation"))
    ev = _events(client, routed="workstation")[0]
    assert ev.intercept == info.id and ev.client == SESSION and ev.status == 200
    assert ev.headers["authorization"] == "<redacted>" and ev.method == "GET" and ev.path == "/b"
    # unmatched traffic is not the owner's unless it watches all
    assert not _events(client, routed="app")


async def test_auto_header_and_path(agent_env: AgentEnv, workstation: tuple[str, int]) -> None:
    auto = intercept("feat", headers={"auto": ""}, path=PathRule(kind="prefix", value="/api"))
    agent_env.apply(auto)
    await agent_env.connect(targets={auto.id: LocalTarget(*workstation)})
    conn = await HttpConn.open(agent_env.http_port)
    hdr = {AUTO_HEADER: f"{SESSION}:feat"}
    assert (await conn.request("/api/x?q=/other", headers=hdr)).text == "workstation:/api/x"
    assert (await conn.request("/web", headers=hdr)).text == "app:/web"
    assert (await conn.request("/api/x", headers={AUTO_HEADER: "other:feat"})).text == "app:/api/x"
    conn.close()


async def test_pipelining_in_order(agent_env: AgentEnv, workstation: tuple[str, int]) -> None:
    await _personal(agent_env, workstation)
    conn = await HttpConn.open(agent_env.http_port)
    raw = b""
    for i in range(6):
        dev = b"x-dev: alice\r\n" if i % 2 else b""
        raw += b"GET /p%d HTTP/1.1\r\nhost: h\r\n%s\r\n" % (i, dev)
    await conn.send_raw(raw)
    replies = [await conn.read_reply() for _ in range(6)]
    conn.close()
    want = [("workstation" if i % 2 else "app") + f":/p{i}" for i in range(6)]
    assert [r.text for r in replies] == want


async def test_chunked_and_expect_continue(
    agent_env: AgentEnv, workstation: tuple[str, int]
) -> None:
    await _personal(agent_env, workstation)
    for dev in ("alice", "nobody"):
        conn = await HttpConn.open(agent_env.http_port)
        await conn.send_raw(
            b"POST /echo HTTP/1.1\r\nhost: h\r\nx-dev: " + dev.encode() + b"\r\n"
            b"transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        reply = await conn.read_reply()
        assert reply.body == b"hello world"
        assert reply.headers["x-served-by"] == ("workstation" if dev == "alice" else "app")
        # Expect: 100-continue: the interim answer arrives before we send the body
        await conn.send_raw(
            b"POST /echo HTTP/1.1\r\nhost: h\r\nx-dev: " + dev.encode() + b"\r\n"
            b"expect: 100-continue\r\ncontent-length: 4\r\n\r\n"
        )
        interim = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100")
        await conn.send_raw(b"ping")
        assert (await conn.read_reply()).body == b"ping"
        conn.close()


async def test_websocket_upgrade(agent_env: AgentEnv, workstation: tuple[str, int]) -> None:
    await _personal(agent_env, workstation)
    url = f"http://127.0.0.1:{agent_env.http_port}/ws"
    async with aiohttp.ClientSession() as http:
        for dev, who in (("alice", "workstation"), ("bob", "app")):
            async with http.ws_connect(url, headers={"x-dev": dev}) as ws:
                await ws.send_str("hi")
                msg = await asyncio.wait_for(ws.receive(), 5)
                assert msg.data == f"{who}:hi"


async def test_non_http_passes_through_and_h2_preface_is_answered(
    agent_env: AgentEnv, workstation: tuple[str, int]
) -> None:
    await _personal(agent_env, workstation)
    # binary garbage: relayed untouched, the app (an HTTP/1 server) answers it itself
    conn = await HttpConn.open(agent_env.http_port)
    await conn.send_raw(b"\x16\x03\x01\x00\x05hello")
    data = await conn.read_all()
    conn.close()
    assert data.startswith(b"HTTP/1.") and b"waylay" not in data, data[:200]
    # an HTTP/2 preface: the agent speaks HTTP/2 (SETTINGS first) and closes with the client
    conn = await HttpConn.open(agent_env.http_port)
    await conn.send_raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    frame = await asyncio.wait_for(conn.reader.readexactly(9), 5)
    assert frame[3] == 0x4  # a SETTINGS frame
    conn.writer.write_eof()
    await conn.read_all()
    conn.close()
    await _still_serving_http(agent_env)


async def _still_serving_http(env: AgentEnv) -> None:
    conn = await HttpConn.open(env.http_port)
    assert (await conn.request("/ok")).text == "app:/ok"
    conn.close()


async def test_watch_all_and_reasons(agent_env: AgentEnv, workstation: tuple[str, int]) -> None:
    _info, owner = await _personal(agent_env, workstation)
    watcher = await agent_env.connect(OTHER, watch_all=True)
    conn = await HttpConn.open(agent_env.http_port)
    await conn.request("/x", headers={"x-dev": "carol", "cookie": "a=b"})
    await conn.request("/y", headers={"x-dev": "alice"})
    conn.close()
    await wait_for(lambda: len(_events(watcher)) >= 2)
    unmatched = _events(watcher, path="/x")[0]
    assert unmatched.routed == "app" and unmatched.intercept == ""
    assert "x-dev" in unmatched.reason and "carol" in unmatched.reason
    assert unmatched.headers == {}  # metadata only for watchers
    mine = _events(watcher, path="/y")[0]
    assert mine.routed == "workstation" and mine.headers == {}
    await wait_for(lambda: _events(owner, path="/y"))
    assert not _events(owner, path="/x")


async def test_fail_open_and_502(agent_env: AgentEnv, workstation: tuple[str, int]) -> None:
    info, client = await _personal(agent_env, workstation)
    conn = await HttpConn.open(agent_env.http_port)
    assert (await conn.request("/1", headers={"x-dev": "alice"})).text == "workstation:/1"
    await client.tunnel.aclose()
    await wait_for(lambda: agent_env.agent.sessions.live(SESSION) is None)
    # same kept-alive connection: now the app answers at once
    assert (await conn.request("/2", headers={"x-dev": "alice"})).text == "app:/2"
    conn.close()
    # a connected client whose local port is closed: 502 from the agent
    client2 = await agent_env.connect(targets={info.id: LocalTarget("127.0.0.1", 1)})
    conn = await HttpConn.open(agent_env.http_port)
    reply = await conn.request("/3", headers={"x-dev": "alice"})
    assert reply.status == 502 and b"upstream failed" in reply.body
    conn.close()
    assert client2.tunnel.closed is False


async def test_conflict_refusal_names_holder(
    agent_env: AgentEnv, workstation: tuple[str, int]
) -> None:
    holder = intercept("first", headers={"x-dev": "alice"}, age=0)
    later = intercept("second", session=OTHER, headers={"x-dev": "alice", "x-more": "1"}, age=5)
    coexist = intercept("third", session=OTHER, headers={"x-dev": "bob"}, age=6)
    agent_env.apply(holder, later, coexist)
    client = await agent_env.connect(OTHER, targets={coexist.id: LocalTarget(*workstation)})
    await wait_for(lambda: any(isinstance(m, ErrorReply) for m in client.messages))
    err = next(m for m in client.messages if isinstance(m, ErrorReply))
    assert (
        err.error.code == "conflict"
        and "user-sess-a" in err.error.message
        and holder.id in err.error.message
    )
    conn = await HttpConn.open(agent_env.http_port)
    assert (await conn.request("/z", headers={"x-dev": "bob"})).text == "workstation:/z"
    conn.close()


async def test_raw_garbage_reply_shape() -> None:
    status, body = parse_raw_reply(b"HTTP/1.1 400 Bad Request\r\nx: y\r\n\r\nbody")
    assert status == 400 and body == b"body"
