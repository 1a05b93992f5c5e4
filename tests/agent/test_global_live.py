"""Global intercepts take all traffic of a port, pooled connections included, and show it live.

Covers: a keep-alive HTTP connection pooled before a global intercept has its
next requests (GET, POST with a body) routed to the workstation over the same
client connection, with one live traffic event per request before the
connection closes; after the intercept is left, that switched connection's
requests and new connections go to the app again; a pooled non-HTTP
connection stays with the app (byte-exact echo) while a new connection on the
port is tunneled; a new connection on a globally intercepted port is tunneled
byte-exact, publishes a "connection opened" event at once and one event per
request (method, path, bytes) while it stays open, then the per-connection
event at close; a pooled connection with no live client stays raw until the
client connects.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agent.listener import CONNECTION_OPENED, REQUEST_SEEN
from core.protocol import Message, TrafficEvent
from core.tunnel import LocalTarget
from tests.agent.conftest import AgentEnv, Client, intercept, wait_for
from tests.agent.httpclient import HttpConn

GLOBAL_HTTP = intercept("all", mechanism="tcp")
GLOBAL_RAW = intercept("raw", mechanism="tcp", port=9000)


@pytest.fixture(params=["splice", "asyncio"])
def env(agent_env: AgentEnv, request: pytest.FixtureRequest) -> AgentEnv:
    """The agent, with its raw relays made by splice(2) or by the asyncio fallback."""
    for listener in agent_env.agent.listeners:
        listener.use_splice = request.param == "splice" and listener.use_splice
    return agent_env


@pytest.fixture
async def raw_workstation() -> AsyncIterator[tuple[str, int]]:
    """A raw TCP workstation: answers each chunk with ``ws:`` + the chunk."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(b"ws:" + data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield "127.0.0.1", server.sockets[0].getsockname()[1]
    finally:
        server.close()


def _events(client: Client, intercept_id: str) -> list[TrafficEvent]:
    messages = client.messages
    return [m for m in messages if isinstance(m, TrafficEvent) and m.intercept == intercept_id]


def _requests(messages: list[Message], intercept_id: str) -> list[tuple[str, str]]:
    return [
        (m.method, m.path)
        for m in messages
        if isinstance(m, TrafficEvent) and m.intercept == intercept_id and m.protocol == "http"
    ]


async def test_pooled_http_connection_goes_to_workstation(
    env: AgentEnv, workstation: tuple[str, int]
) -> None:
    conn = await HttpConn.open(env.http_port)
    before = await conn.request("/before")
    assert before.text == "app:/before"
    env.apply(GLOBAL_HTTP)
    client = await env.connect(targets={GLOBAL_HTTP.id: LocalTarget(*workstation)})
    got = await conn.request("/mine", method="POST", body=b"abcde")
    assert (got.status, got.text, got.headers["x-body-len"]) == (200, "workstation:/mine", "5")
    assert (await conn.request("/again")).text == "workstation:/again"
    # live: one event per request while the connection is still open
    await wait_for(lambda: len(_requests(client.messages, GLOBAL_HTTP.id)) == 2)
    first = _events(client, GLOBAL_HTTP.id)[0]
    assert (first.method, first.path, first.status) == ("POST", "/mine", 200)
    assert (first.routed, first.client) == ("workstation", GLOBAL_HTTP.session_id)
    assert first.bytes_in == 5
    assert env.agent.listeners[0].switched == 1

    env.apply()  # leave: the switched connection's requests go to the app again
    after = await conn.request("/after")
    assert after.text == "app:/after"
    fresh = await HttpConn.open(env.http_port)
    assert (await fresh.request("/new")).text == "app:/new"
    fresh.close()
    conn.close()


async def test_pooled_connection_waits_for_live_client(
    env: AgentEnv, workstation: tuple[str, int]
) -> None:
    conn = await HttpConn.open(env.http_port)
    assert (await conn.request("/a")).text == "app:/a"
    env.apply(GLOBAL_HTTP)  # nobody connected yet: stays raw, with the app
    assert (await conn.request("/b")).text == "app:/b"
    assert env.agent.listeners[0].switched == 0
    await env.connect(targets={GLOBAL_HTTP.id: LocalTarget(*workstation)})
    assert (await conn.request("/c")).text == "workstation:/c"
    conn.close()


async def test_pooled_non_http_stays_with_app(
    env: AgentEnv, raw_workstation: tuple[str, int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", env.tcp_port)

    async def echo(data: bytes) -> bytes:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(data)), 5)

    assert await echo(b"\x00\x01hello") == b"\x00\x01hello"
    env.apply(GLOBAL_RAW)
    await env.connect(targets={GLOBAL_RAW.id: LocalTarget(*raw_workstation)})
    for i in range(5):  # still the app's echo, byte for byte, at every boundary
        data = b"\x16\x03\x01binary%d" % i
        assert await echo(data) == data
    # a new connection on the port goes to the workstation
    r2, w2 = await asyncio.open_connection("127.0.0.1", env.tcp_port)
    w2.write(b"\x00new")
    assert await asyncio.wait_for(r2.readexactly(7), 5) == b"ws:\x00new"
    w2.close()
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b"bye"
    writer.close()
    assert env.agent.listeners[1].switched == 0


async def test_new_connection_events_are_live(env: AgentEnv, workstation: tuple[str, int]) -> None:
    env.apply(GLOBAL_HTTP)
    client = await env.connect(targets={GLOBAL_HTTP.id: LocalTarget(*workstation)})
    conn = await HttpConn.open(env.http_port)
    await wait_for(
        lambda: any(e.reason == CONNECTION_OPENED for e in _events(client, GLOBAL_HTTP.id)),
        what="connection opened event",
    )
    opened = _events(client, GLOBAL_HTTP.id)[0]
    assert (opened.routed, opened.client, opened.status) == (
        "workstation",
        GLOBAL_HTTP.session_id,
        None,
    )
    assert (await conn.request("/one", headers={"authorization": "secret"})).text == (
        "workstation:/one"
    )
    # a chunked body, sent in awkward pieces, then a request with a body
    await conn.send_raw(b"POST /two HTTP/1.1\r\nhost: h\r\ntransfer-enc")
    await conn.send_raw(b"oding: chunked\r\n\r\n3\r\nabc\r\n0\r")
    await conn.send_raw(b"\n\r\n")
    two = await conn.read_reply()
    assert (two.text, two.headers["x-body-len"]) == ("workstation:/two", "3")
    assert (await conn.request("/three", method="PUT", body=b"x" * 1000)).text == (
        "workstation:/three"
    )
    await wait_for(lambda: len(_requests(client.messages, GLOBAL_HTTP.id)) == 3)
    seen = [e for e in _events(client, GLOBAL_HTTP.id) if e.protocol == "http"]
    assert [(e.method, e.path) for e in seen] == [
        ("GET", "/one"),
        ("POST", "/two"),
        ("PUT", "/three"),
    ]
    assert all(e.reason == REQUEST_SEEN and e.routed == "workstation" for e in seen)
    assert seen[0].headers["authorization"] == "<redacted>"
    assert seen[2].bytes_in > 1000 and seen[1].bytes_in > 0
    # nothing closed yet: the per-connection event comes at close
    assert [e for e in _events(client, GLOBAL_HTTP.id) if e.protocol == "tcp"] == [opened]
    conn.close()
    await wait_for(
        lambda: len([e for e in _events(client, GLOBAL_HTTP.id) if e.protocol == "tcp"]) == 2,
        what="connection closed event",
    )
    closed = [e for e in _events(client, GLOBAL_HTTP.id) if e.protocol == "tcp"][-1]
    assert closed.bytes_in > 1000 and closed.bytes_out > 0
    assert "3 request(s)" in closed.reason
