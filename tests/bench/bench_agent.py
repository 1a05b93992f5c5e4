"""Benchmark: the traffic agent side by side with a direct connection and HAProxy.

Run with ``make bench`` (``pytest tests/bench -s``). Not part of ``make test``.

Everything runs on this machine in separate processes: a threaded TCP sink
(bulk), an HAProxy "origin" that answers ``200 ok`` itself (small HTTP), the
agent (``python -m agent``), HAProxy 2.x as the reference proxy (one thread,
like the agent; ``option splice-auto`` for TCP, as the agent splices too), and
a rig process that plays the manager (pushes the intercepts) and the
workstation (a real ``ClientTunnel``). Load comes from ``wrk`` (HTTP) and a
Python bulk client (TCP). Figures:

- pass-through bulk TCP throughput (MB/s): direct / HAProxy tcp / agent;
- unmatched small HTTP on a personal-intercept port, keep-alive: requests/s
  and p99 latency, direct / HAProxy http / agent;
- intercepted path (agent -> tunnel -> workstation): bulk MB/s and requests/s;
- memory: agent and HAProxy RSS idle and with 1,000 open connections.

The helper roles live in this file too: ``python bench_agent.py sink|bulk|rig``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
HERE = Path(__file__).resolve()
BULK_BYTES = 1 << 30
WRK_SECONDS = 5
WRK_CONNS = 32


# ------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5),
        ):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def poll(
    cond: Callable[[], bool], what: str, timeout: float = 30.0, detail: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout}s; {detail()}")
        time.sleep(0.05)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def ensure_tools() -> str | None:
    """Install haproxy and wrk with apt when missing; the reason when that fails."""
    missing = [t for t in ("haproxy", "wrk") if shutil.which(t) is None]
    if not missing:
        return None
    try:
        subprocess.run(
            ["apt-get", "install", "-y", *missing], check=True, capture_output=True, timeout=300
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"needs {' '.join(missing)} (apt-get install -y {' '.join(missing)} failed: {exc})"
    return (
        None if all(shutil.which(t) for t in missing) else f"{missing} still missing after apt-get"
    )


# ----------------------------------------------------------- role: the sink


def run_sink(port: int) -> None:
    """Threaded TCP sink: counts bytes until EOF, answers the count."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(4096)

    def serve(conn: socket.socket) -> None:
        buf = bytearray(1 << 20)
        total = 0
        with conn, contextlib.suppress(OSError):
            while n := conn.recv_into(buf):
                total += n
            conn.sendall(str(total).encode())

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


# ------------------------------------------------------ role: bulk client


def run_bulk(port: int, total: int) -> None:
    chunk = memoryview(bytes(1 << 20))
    sock = socket.create_connection(("127.0.0.1", port))
    start = time.perf_counter()
    sent = 0
    while sent < total:
        sock.sendall(chunk)
        sent += len(chunk)
    sock.shutdown(socket.SHUT_WR)
    reply = b""
    while data := sock.recv(100):
        reply += data
    elapsed = time.perf_counter() - start
    assert int(reply or b"0") == sent, f"sink got {reply!r}, sent {sent}"
    print(json.dumps({"mbps": sent / elapsed / 1e6}))


def bulk(port: int, total: int = BULK_BYTES) -> float:
    out = subprocess.run(
        [PY, str(HERE), "bulk", str(port), str(total)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["mbps"])


# -------------------------------------------- role: manager + workstation


def run_rig(manager_port: int, tunnel_port: int, spec_json: str) -> None:
    """Manager stand-in (pushes the intercepts) and the workstation's tunnel client."""
    import anyio
    from aiohttp import WSMsgType, web

    from core.protocol import (
        AgentHello,
        AgentWelcome,
        InterceptInfo,
        InterceptsSnapshot,
        dump_message,
        parse_message,
    )
    from core.tunnel import ClientTunnel, LocalTarget

    spec = json.loads(spec_json)
    infos = [InterceptInfo.model_validate(i) for i in spec["intercepts"]]
    targets = {k: LocalTarget("127.0.0.1", v) for k, v in spec["targets"].items()}

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and isinstance(parse_message(msg.data), AgentHello):
                await ws.send_str(dump_message(AgentWelcome(agent_id="bench")))
                await ws.send_str(dump_message(InterceptsSnapshot(intercepts=infos)))
        return ws

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/v1/agent", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", manager_port).start()
        while True:
            with contextlib.suppress(OSError):
                sock = await anyio.connect_tcp("127.0.0.1", tunnel_port)
                break
            await anyio.sleep(0.1)
        tunnel = ClientTunnel(sock, session_id=spec["session"], resolve=targets.get)
        print("rig ready", flush=True)
        await tunnel.run()

    anyio.run(main)


# --------------------------------------------------------------- the setup


HAPROXY_ORIGIN = """
global
    maxconn 5000
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend origin
    bind 127.0.0.1:{origin}
    http-request return status 200 content-type text/plain string "ok"
"""

HAPROXY_PROXY = """
global
    maxconn 5000
    nbthread 1
defaults
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend tcpin
    mode tcp
    option splice-auto
    bind 127.0.0.1:{tcp}
    default_backend sink
backend sink
    mode tcp
    option splice-auto
    server s 127.0.0.1:{sink}
frontend httpin
    mode http
    bind 127.0.0.1:{http}
    default_backend origin
backend origin
    mode http
    http-reuse always
    server o 127.0.0.1:{origin}
"""


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


def wrk(port: int, header: str | None = None) -> tuple[float, float]:
    """Requests/s and p99 latency (ms) of small keep-alive GETs."""
    cmd = ["wrk", "-t", "1", "-c", str(WRK_CONNS), "-d", f"{WRK_SECONDS}s", "--latency"]
    if header:
        cmd += ["-H", header]
    out = subprocess.run(
        [*cmd, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=60
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert m, out
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert errors is None, out
    return rps, p99


def _row(label: str, direct: float | None, haproxy: float, agent: float) -> str:
    d = f"{direct:9.2f}" if direct is not None else " " * 9
    return f"{label:42} {d} {haproxy:9.2f} {agent:9.2f} {agent / haproxy:14.2f}"


def test_agent_benchmark() -> None:
    reason = ensure_tools()
    if reason:
        import pytest

        pytest.skip(f"benchmark skipped: {reason}")
    from core.protocol import AgentConfig, InterceptInfo, InterceptSpec, TakeoverPort

    ports = {
        k: free_port()
        for k in (
            "sink",
            "origin",
            "hp_tcp",
            "hp_http",
            "a_tcp",
            "a_http",
            "a_int",
            "a_int_http",
            "tunnel",
            "manager",
        )
    }
    session = "bench"
    now = "2026-01-01T00:00:00Z"

    def info(name: str, service_port: int, **spec: object) -> InterceptInfo:
        return InterceptInfo(
            id=f"{session}:{name}",
            session_id=session,
            owner="bench",
            created=now,  # type: ignore[arg-type]
            spec=InterceptSpec(
                name=name,
                namespace="bench",
                workload="w",
                service="svc",
                service_port=service_port,
                **spec,
            ),  # type: ignore[arg-type]
        )

    takeovers = [
        TakeoverPort(
            service="svc",
            service_port=1,
            app_container="app",
            app_port=ports["sink"],
            agent_port=ports["a_tcp"],
        ),
        TakeoverPort(
            service="svc",
            service_port=2,
            app_container="app",
            app_port=ports["origin"],
            agent_port=ports["a_http"],
        ),
        TakeoverPort(
            service="svc",
            service_port=3,
            app_container="app",
            app_port=ports["sink"],
            agent_port=ports["a_int"],
        ),
        TakeoverPort(
            service="svc",
            service_port=4,
            app_container="app",
            app_port=ports["origin"],
            agent_port=ports["a_int_http"],
        ),
    ]
    intercepts = [
        info("personal", 2, mechanism="http", headers={"x-dev": "someone-else"}),  # nothing matches
        info("bulk", 3, mechanism="tcp"),
        info("reqs", 4, mechanism="http", headers={"x-dev": "bench"}),
    ]
    rig_spec = {
        "session": session,
        "intercepts": [i.model_dump(mode="json") for i in intercepts],
        "targets": {f"{session}:bulk": ports["sink"], f"{session}:reqs": ports["origin"]},
    }
    config = AgentConfig(
        workload_kind="Deployment",
        workload_name="w",
        namespace="bench",
        manager_address=f"127.0.0.1:{ports['manager']}",
        ports=takeovers,
        tunnel_port=ports["tunnel"],
    )
    tmp = Path(tempfile.mkdtemp(prefix="waylay-bench-"))
    (tmp / "origin.cfg").write_text(HAPROXY_ORIGIN.format(**ports))
    (tmp / "proxy.cfg").write_text(
        HAPROXY_PROXY.format(tcp=ports["hp_tcp"], http=ports["hp_http"], **ports)
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    agent_env = {
        **env,
        "WAYLAY_AGENT_CONFIG": config.model_dump_json(),
        "WAYLAY_POD_IP": "127.0.0.1",
        "WAYLAY_POD_NAME": "bench-pod",
    }
    results: dict[str, float] = {}
    with processes() as procs:
        procs.append(subprocess.Popen([PY, str(HERE), "sink", str(ports["sink"])], env=env))
        procs.append(
            subprocess.Popen(["haproxy", "-f", str(tmp / "origin.cfg")], stderr=subprocess.DEVNULL)
        )
        hap = subprocess.Popen(["haproxy", "-f", str(tmp / "proxy.cfg")], stderr=subprocess.DEVNULL)
        procs.append(hap)
        agent_log = (tmp / "agent.log").open("wb")
        agent = subprocess.Popen([PY, "-m", "agent"], env=agent_env, cwd=ROOT, stderr=agent_log)
        procs.append(agent)
        for key in ("sink", "origin", "hp_tcp", "hp_http", "a_tcp", "a_http", "tunnel"):
            try:
                wait_port(ports[key])
            except TimeoutError:
                raise AssertionError(
                    f"{key} did not start; agent log:\n{(tmp / 'agent.log').read_text()}"
                )
        results["rss_agent_idle_kib"] = rss_kib(agent.pid)
        results["rss_haproxy_idle_kib"] = rss_kib(hap.pid)
        rig = subprocess.Popen(
            [
                PY,
                str(HERE),
                "rig",
                str(ports["manager"]),
                str(ports["tunnel"]),
                json.dumps(rig_spec),
            ],
            env=env,
            stdout=subprocess.PIPE,
        )
        procs.append(rig)
        assert rig.stdout is not None and b"rig ready" in rig.stdout.readline()
        # the agent logs both the snapshot and the tunnel registration: wait for them
        poll(
            lambda: (
                "applying 3 intercept" in (tmp / "agent.log").read_text()
                and "client session bench connected" in (tmp / "agent.log").read_text()
            ),
            "the agent to receive the intercepts and the rig's tunnel",
        )

        # 1. pass-through bulk
        bulk(ports["sink"], 64 << 20)  # warm-up
        results["bulk_direct"] = bulk(ports["sink"])
        results["bulk_haproxy"] = bulk(ports["hp_tcp"])
        results["bulk_agent"] = bulk(ports["a_tcp"])
        # 2. unmatched small HTTP on a personal-intercept port
        results["rps_direct"], results["p99_direct"] = wrk(ports["origin"])
        results["rps_haproxy"], results["p99_haproxy"] = wrk(ports["hp_http"])
        c0 = cpu_seconds(agent.pid)
        results["rps_agent"], results["p99_agent"] = wrk(ports["a_http"])
        results["cpu_agent_unmatched"] = (cpu_seconds(agent.pid) - c0) / WRK_SECONDS
        # 3. intercepted path
        results["bulk_intercepted"] = bulk(ports["a_int"], BULK_BYTES // 4)
        c0, r0 = cpu_seconds(agent.pid), cpu_seconds(rig.pid)
        results["rps_intercepted"], results["p99_intercepted"] = wrk(
            ports["a_int_http"], "x-dev: bench"
        )
        results["cpu_agent_intercepted"] = (cpu_seconds(agent.pid) - c0) / WRK_SECONDS
        results["cpu_rig_intercepted"] = (cpu_seconds(rig.pid) - r0) / WRK_SECONDS
        # 4. memory with 1,000 open connections
        held = []
        for port, key in ((ports["a_tcp"], "agent"), (ports["hp_tcp"], "haproxy")):
            pid = agent.pid if key == "agent" else hap.pid
            base = open_fds(pid)
            for _ in range(1000):
                held.append(socket.create_connection(("127.0.0.1", port)))
            # each held connection becomes two descriptors in the proxy (client side, app side);
            # a few of the earlier phases' connections may still be closing when ``base`` is taken
            poll(
                lambda pid=pid, base=base: open_fds(pid) >= base + 1900,
                f"{key} to hold 1,000 connections (descriptors: {base} before)",
                detail=lambda pid=pid: f"now {open_fds(pid)}",
            )
            results[f"rss_{key}_1000_kib"] = rss_kib(pid)
        for s in held:
            s.close()

    r = results
    mib = {k: v / 1024 for k, v in r.items() if k.startswith("rss_")}
    lines = [
        "",
        "waylay agent benchmark (2 shared cores; HAProxy 1 thread, agent 1 process)",
        f"{'figure':42} {'direct':>9} {'haproxy':>9} {'agent':>9} {'agent/haproxy':>14}",
        _row("pass-through bulk TCP (MB/s)", r["bulk_direct"], r["bulk_haproxy"], r["bulk_agent"]),
        _row(
            "personal port, unmatched GET (req/s)",
            r["rps_direct"],
            r["rps_haproxy"],
            r["rps_agent"],
        ),
        _row(
            "personal port, unmatched GET p99 (ms)",
            r["p99_direct"],
            r["p99_haproxy"],
            r["p99_agent"],
        ),
        _row("intercepted bulk via tunnel (MB/s)", None, r["bulk_haproxy"], r["bulk_intercepted"]),
        _row("intercepted GET via tunnel (req/s)", None, r["rps_haproxy"], r["rps_intercepted"]),
        _row("intercepted GET via tunnel p99 (ms)", None, r["p99_haproxy"], r["p99_intercepted"]),
        _row("RSS idle (MiB)", None, mib["rss_haproxy_idle_kib"], mib["rss_agent_idle_kib"]),
        _row(
            "RSS, 1,000 open connections (MiB)",
            None,
            mib["rss_haproxy_1000_kib"],
            mib["rss_agent_1000_kib"],
        ),
        "goals: bulk >= 0.50, req/s >= 0.50, p99 <= 2.0x, intercepted >= 0.25 (of HAProxy)",
        f"CPU busy (1.0 = one core): agent {r['cpu_agent_unmatched']:.2f} on unmatched GETs; "
        f"agent {r['cpu_agent_intercepted']:.2f} + workstation {r['cpu_rig_intercepted']:.2f} "
        "on intercepted GETs",
    ]
    print("\n".join(lines))
    assert r["bulk_agent"] > 0 and r["rps_agent"] > 0


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "sink":
        run_sink(int(sys.argv[2]))
    elif role == "bulk":
        run_bulk(int(sys.argv[2]), int(sys.argv[3]))
    elif role == "rig":
        sys.path.insert(0, str(ROOT))
        run_rig(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
