"""Raw pass-through connections switching to HTTP routing when a personal intercept starts.

Covers: a keep-alive connection opened (and used) before the intercept has its
next matching request routed to the workstation and unmatched ones to the app
over the same client connection and the same app connection; pipelined
requests sent across the switch are answered in order; a connection in the
middle of a slow streaming response switches only after that response has
been delivered whole; non-HTTP bytes after an idle period stay raw (and the
connection stays raw); a half-close at a boundary reaches the app; a request body sent after
``100 Continue`` is not taken for a new request; with no live tunnel the connection stays raw and
switches once the client connects; a global intercept takes existing
HTTP connections too (at their next request); the request-line classifier (hypothesis); and a
hypothesis fuzz of chunk boundaries of the requests sent around the switch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.listener import MAX_MISSES, PortListener
from agent.passthrough import Relay
from agent.splice import SpliceRelay
from agent.switch import Verdict, classify
from core.tunnel import LocalTarget
from tests.agent.conftest import AgentEnv, Client, _serve, intercept, wait_for
from tests.agent.httpclient import HttpConn

STREAM_PARTS = 5


class StreamGate:
    """Lets the test release a streaming response part by part."""

    def __init__(self) -> None:
        self.sent = 0
        self.allowed = asyncio.Semaphore(0)


@pytest.fixture
def gate() -> StreamGate:
    return StreamGate()


@pytest.fixture
async def app(gate: StreamGate) -> AsyncIterator[tuple[str, int]]:
    """The app: ``/stream`` sends a chunked response one part per release; else hello."""

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"x-served-by": "app"})
        await resp.prepare(request)
        for i in range(STREAM_PARTS):
            await gate.allowed.acquire()
            await resp.write(b"part%d;" % i)
            gate.sent += 1
        await resp.write_eof()
        return resp

    async def hello(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        assert request.transport is not None
        resp = web.Response(text=f"app:{request.path}:{len(body)}")
        resp.headers["x-served-by"] = "app"
        resp.headers["x-peer-port"] = str(request.transport.get_extra_info("peername")[1])
        return resp

    application = web.Application()
    application.router.add_get("/stream", stream)
    application.router.add_route("*", "/{tail:.*}", hello)
    async for addr in _serve(application):
        yield addr


@pytest.fixture
async def workstation() -> AsyncIterator[tuple[str, int]]:
    async def hello(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        return web.Response(text=f"workstation:{request.path}:{len(body)}")

    application = web.Application()
    application.router.add_route("*", "/{tail:.*}", hello)
    async for addr in _serve(application):
        yield addr


@pytest.fixture(params=["splice", "asyncio"])
def env(agent_env: AgentEnv, request: pytest.FixtureRequest) -> AgentEnv:
    """The agent, with its raw relays made by splice(2) or by the asyncio fallback."""
    for listener in agent_env.agent.listeners:
        listener.use_splice = request.param == "splice" and listener.use_splice
    return agent_env


INFO = intercept("mine", headers={"x-dev": "alice"})
DEV = {"x-dev": "alice"}


async def _intercept(env: AgentEnv, workstation: tuple[str, int]) -> Client:
    env.apply(INFO)
    return await env.connect(targets={INFO.id: LocalTarget(*workstation)})


def _raw(listener: PortListener) -> list[SpliceRelay | Relay]:
    return [*listener.splices, *listener.relays]


def _raw_relays(env: AgentEnv) -> int:
    return len(_raw(env.agent.listeners[0]))


async def test_pooled_connection_switches(env: AgentEnv, workstation: tuple[str, int]) -> None:
    conn = await HttpConn.open(env.http_port)
    before = await conn.request("/before")
    assert before.text == "app:/before:0" and _raw_relays(env) == 1
    await _intercept(env, workstation)
    mine = await conn.request("/mine", headers=DEV, method="POST", body=b"abc")
    other = await conn.request("/other")
    again = await conn.request("/again", headers=DEV)
    conn.close()
    assert (mine.status, mine.text) == (200, "workstation:/mine:3")
    assert other.text == "app:/other:0" and again.text == "workstation:/again:0"
    # unmatched requests still use the app connection the raw relay had opened
    assert other.headers["x-peer-port"] == before.headers["x-peer-port"]
    assert _raw_relays(env) == 0 and env.agent.listeners[0].switched == 1


async def test_pipelined_across_switch(env: AgentEnv, workstation: tuple[str, int]) -> None:
    conn = await HttpConn.open(env.http_port)
    assert (await conn.request("/warm")).text == "app:/warm:0"
    await _intercept(env, workstation)
    raw = b"".join(
        b"GET /p%d HTTP/1.1\r\nhost: h\r\n%s\r\n" % (i, b"x-dev: alice\r\n" if i % 2 else b"")
        for i in range(6)
    )
    await conn.send_raw(raw)
    replies = [await conn.read_reply() for _ in range(6)]
    conn.close()
    assert [r.text for r in replies] == [
        ("workstation" if i % 2 else "app") + f":/p{i}:0" for i in range(6)
    ]


async def test_mid_response_switches_after_it(
    env: AgentEnv, workstation: tuple[str, int], gate: StreamGate
) -> None:
    conn = await HttpConn.open(env.http_port)
    await conn.send_request("/stream")
    gate.allowed.release()
    await wait_for(lambda: gate.sent == 1)
    await _intercept(env, workstation)  # the intercept starts mid-response
    assert _raw_relays(env) == 1
    reply_task = asyncio.get_running_loop().create_task(conn.read_reply())
    for _ in range(STREAM_PARTS - 1):
        gate.allowed.release()
    reply = await reply_task
    assert reply.text == "".join(f"part{i};" for i in range(STREAM_PARTS))
    assert _raw_relays(env) == 1  # no request since: still raw
    assert (await conn.request("/next", headers=DEV)).text == "workstation:/next:0"
    assert (await conn.request("/plain")).text == "app:/plain:0"
    conn.close()


async def test_non_http_after_idle_stays_raw(env: AgentEnv, workstation: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", env.tcp_port)
    listener = env.agent.listeners[1]

    async def echo(data: bytes) -> bytes:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(data)), 5)

    assert await echo(b"hello") == b"hello"
    info = intercept("raw", port=9000, headers={"x-dev": "alice"})
    env.apply(info)
    await env.connect(targets={info.id: LocalTarget(*workstation)})
    assert _raw(listener) and all(r.armed is not None for r in _raw(listener))
    for i in range(MAX_MISSES):
        # looked at (and relayed unchanged) at each boundary, until it stays raw for good
        data = b"\x16\x03\x01binary%d" % i
        assert await echo(data) == data
        await wait_for(
            lambda i=i: [r.misses for r in _raw(listener)] == [i + 1], what="raw relay resumed"
        )
    assert all(r.armed is None for r in _raw(listener))
    # an HTTP-looking line later is not switched any more: the echo app sees it
    line = b"GET / HTTP/1.1\r\nhost: h\r\n\r\n"
    assert await echo(line) == line
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b"bye"
    writer.close()


async def test_body_after_100_continue_is_not_a_boundary(
    env: AgentEnv, workstation: tuple[str, int]
) -> None:
    conn = await HttpConn.open(env.http_port)
    body = b'{"upload": "' + b"x" * 100 + b'"}'
    await conn.send_raw(
        b"POST /upload HTTP/1.1\r\nhost: h\r\nexpect: 100-continue\r\n"
        b"content-length: %d\r\n\r\n" % len(body)
    )
    interim = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), 5)
    assert interim.startswith(b"HTTP/1.1 100")
    await _intercept(env, workstation)
    await conn.send_raw(body)  # after the app spoke, but part of the request
    assert (await conn.read_reply()).text == f"app:/upload:{len(body)}"
    assert (await conn.request("/next", headers=DEV)).text == "workstation:/next:0"
    conn.close()


async def test_half_close_at_boundary_is_passed_on(
    env: AgentEnv, workstation: tuple[str, int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", env.tcp_port)
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
    info = intercept("raw", port=9000, headers={"x-dev": "alice"})
    env.apply(info)
    await env.connect(targets={info.id: LocalTarget(*workstation)})
    writer.write_eof()  # at a boundary: no bytes to look at, the EOF goes on to the app
    assert await asyncio.wait_for(reader.read(), 5) == b"bye"
    writer.close()


async def test_switch_waits_for_a_live_tunnel(env: AgentEnv, workstation: tuple[str, int]) -> None:
    conn = await HttpConn.open(env.http_port)
    assert (await conn.request("/a")).text == "app:/a:0"
    env.apply(INFO)  # nobody connected yet: stays raw
    assert (await conn.request("/b", headers=DEV)).text == "app:/b:0"
    assert _raw_relays(env) == 1
    await env.connect(targets={INFO.id: LocalTarget(*workstation)})
    assert (await conn.request("/c", headers=DEV)).text == "workstation:/c:0"
    conn.close()


async def test_global_intercept_takes_existing_connections(
    env: AgentEnv, workstation: tuple[str, int]
) -> None:
    conn = await HttpConn.open(env.http_port)
    assert (await conn.request("/a")).text == "app:/a:0"
    info = intercept("all", mechanism="tcp")
    env.apply(info)
    await env.connect(targets={info.id: LocalTarget(*workstation)})
    assert (await conn.request("/b")).text == "workstation:/b:0"
    fresh = await HttpConn.open(env.http_port)
    assert (await fresh.request("/c")).text == "workstation:/c:0"
    conn.close()
    fresh.close()


@given(st.binary(max_size=300))
def test_classify_never_fails(data: bytes) -> None:
    assert classify(data) in set(Verdict)


@given(
    method=st.sampled_from(["GET", "POST", "OPTIONS"]),
    path=st.text("abc/?=&%", min_size=1, max_size=30).map(lambda p: "/" + p),
    version=st.sampled_from(["1.0", "1.1"]),
    eol=st.sampled_from(["\r\n", "\n"]),
)
def test_classify_request_lines(method: str, path: str, version: str, eol: str) -> None:
    line = f"{method} {path} HTTP/{version}{eol}".encode()
    for cut in range(len(line)):
        assert classify(line[:cut]) is Verdict.MORE, line[:cut]
    assert classify(line) is Verdict.HTTP
    assert classify(line + b"host: x\r\n") is Verdict.HTTP
    assert classify(b"PRI * HTTP/2.0\r\n") is Verdict.RAW
    assert classify(b"\x16\x03\x01") is Verdict.RAW


_request = st.tuples(st.booleans(), st.integers(min_value=0, max_value=3000))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    requests=st.lists(_request, min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=8),
)
async def test_fuzz_chunk_boundaries_around_switch(
    env: AgentEnv,
    workstation: tuple[str, int],
    requests: list[tuple[bool, int]],
    cuts: list[int],
) -> None:
    if not env.clients:
        await env.connect(targets={INFO.id: LocalTarget(*workstation)})
    env.apply()  # nothing intercepted: the next connection is raw
    switched = env.agent.listeners[0].switched
    conn = await HttpConn.open(env.http_port)
    assert (await conn.request("/warm")).text == "app:/warm:0"
    env.apply(INFO)
    wire = b""
    for i, (mine, size) in enumerate(requests):
        dev = b"x-dev: alice\r\n" if mine else b""
        body = bytes([65 + i]) * size
        wire += b"POST /r%d HTTP/1.1\r\nhost: h\r\n%scontent-length: %d\r\n\r\n%s" % (
            i,
            dev,
            size,
            body,
        )
    points = sorted({c % len(wire) for c in cuts} - {0})
    for start, end in zip([0, *points], [*points, len(wire)], strict=True):
        await conn.send_raw(wire[start:end])
    replies = [await conn.read_reply() for _ in requests]
    conn.close()
    assert [r.text for r in replies] == [
        f"{'workstation' if mine else 'app'}:/r{i}:{size}"
        for i, (mine, size) in enumerate(requests)
    ]
    assert env.agent.listeners[0].switched == switched + 1
