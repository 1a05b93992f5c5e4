"""Bad input on a personal-intercept port: the agent answers like a good proxy.

Covers: a malformed request -> 400 and close; a request head over 64 KiB ->
431; a slowloris client (head never completes) -> 408 after the head timeout;
a client vanishing mid-body -> the app connection is dropped and the agent
keeps serving; other connections are unaffected throughout; many idle
connections (5,000 on the HTTP port, 5,000 pass-through; the descriptor limit
is raised in-process, and the count scaled down only where that is refused)
are held without errors and released, and the agent's connection tables
return to empty afterwards; junk on the tunnel port (an HTTP/1 request, zero
bytes) is dropped at once and real clients still connect.
"""

from __future__ import annotations

import asyncio
import resource

import anyio

from core.tunnel import LocalTarget
from tests.agent.conftest import AgentEnv, intercept, wait_for
from tests.agent.httpclient import HttpConn, parse_raw_reply


async def _personal(env: AgentEnv, workstation: tuple[str, int]) -> None:
    info = intercept("mine", headers={"x-dev": "alice"})
    env.apply(info)
    await env.connect(targets={info.id: LocalTarget(*workstation)})


async def _still_serving(env: AgentEnv) -> None:
    conn = await HttpConn.open(env.http_port)
    assert (await conn.request("/ok")).text == "app:/ok"
    conn.close()


async def test_garbage_and_oversized_head(
    agent_env: AgentEnv, workstation: tuple[str, int]
) -> None:
    await _personal(agent_env, workstation)
    conn = await HttpConn.open(agent_env.http_port)
    await conn.send_raw(b"GET / HTTP/1.1\r\nbad header line\r\n\r\n")
    status, _ = parse_raw_reply(await conn.read_all())
    assert status == 400
    conn.close()

    conn = await HttpConn.open(agent_env.http_port)
    await conn.send_raw(b"GET / HTTP/1.1\r\nhost: h\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n")
    status, _ = parse_raw_reply(await conn.read_all())
    assert status == 431
    conn.close()
    await _still_serving(agent_env)


async def test_slowloris_gets_408(agent_env: AgentEnv, workstation: tuple[str, int]) -> None:
    await _personal(agent_env, workstation)  # head timeout is 1 s in the fixture
    conn = await HttpConn.open(agent_env.http_port)
    await conn.send_raw(b"GET / HTTP/1.1\r\n")
    slow = asyncio.get_running_loop().create_task(_drip(conn))
    await _still_serving(agent_env)  # meanwhile others are served
    status, _ = parse_raw_reply(await conn.read_all(timeout=5))
    assert status == 408
    slow.cancel()
    conn.close()


async def _drip(conn: HttpConn) -> None:
    try:
        for i in range(100):
            await conn.send_raw(b"x-a%d: b\r\n" % i)
            await asyncio.sleep(0.1)
    except (ConnectionError, OSError):
        pass


async def test_client_vanishes_mid_body(agent_env: AgentEnv, workstation: tuple[str, int]) -> None:
    await _personal(agent_env, workstation)
    for dev in ("alice", "nobody"):
        conn = await HttpConn.open(agent_env.http_port)
        await conn.send_raw(
            b"POST /echo HTTP/1.1\r\nhost: h\r\nx-dev: "
            + dev.encode()
            + b"\r\ncontent-length: 100000\r\n\r\n"
            + b"z" * 1000
        )
        await anyio.sleep(0.05)
        conn.writer.transport.abort()
    await _still_serving(agent_env)
    listener = agent_env.agent.listeners[0]
    await wait_for(lambda: listener.connections == 0)


def _raise_nofile(want: int) -> int:
    """Raise this process's descriptor limit (the hard one too when we may)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def test_many_idle_connections(agent_env: AgentEnv, workstation: tuple[str, int]) -> None:
    """10,000 idle connections (5,000 on the HTTP port, 5,000 pass-through). Each costs
    4 descriptors in this one process (client, agent's accepted socket, agent's app
    socket, app's accepted socket), so the limit is raised to 45,000; where that is not
    allowed the count is scaled down to fit."""
    limit = _raise_nofile(45_000)
    per_port = 5000 if limit >= 45_000 else (limit - 1000) // 8
    await _personal(agent_env, workstation)
    conns: list[asyncio.StreamWriter] = []
    readers: list[asyncio.StreamReader] = []
    try:
        for port in (agent_env.http_port, agent_env.tcp_port):
            for _ in range(per_port):
                r, w = await asyncio.open_connection("127.0.0.1", port)
                conns.append(w)
                readers.append(r)
        listeners = agent_env.agent.listeners
        await wait_for(
            lambda: listeners[0].connections + listeners[1].connections >= 2 * per_port, 30
        )
        await _still_serving(agent_env)
        # the last pass-through connection still works
        conns[-1].write(b"hi")
        assert await asyncio.wait_for(readers[-1].readexactly(2), 5) == b"hi"
    finally:
        for w in conns:
            w.transport.abort()
    await wait_for(lambda: sum(x.connections for x in agent_env.agent.listeners) == 0, 20)


async def test_garbage_on_the_tunnel_port(
    agent_env: AgentEnv, workstation: tuple[str, int]
) -> None:
    """Something that is not a waylay client (a scanner, an HTTP/1 request) on the tunnel
    port is dropped; real clients connect and work as before."""
    host, port = agent_env.agent.tunnels.address
    for junk in (b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", b"\x00" * 100):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(junk)
        with anyio.fail_after(3):
            while await reader.read(65536):
                pass  # the agent's preface/GOAWAY, then it closes
        writer.close()
    await _personal(agent_env, workstation)
    conn = await HttpConn.open(agent_env.http_port)
    assert (await conn.request("/w", headers={"x-dev": "alice"})).text == "workstation:/w"
    conn.close()
