"""Benchmark: the traffic manager (``python -m webhook``) under load.

Run with ``make bench`` (``pytest tests/bench -s``) or
``.venv/bin/python tests/bench/bench_manager.py``. Not part of ``make test``.

The manager runs as its own process (no cluster: mode and keys in memory), so
its CPU and memory are measured alone from ``/proc``. Figures:

- admission: p50/p99 round-trip of a real pod AdmissionReview over TLS
  (keep-alive), side by side with ``GET /healthz`` on the same TLS server (the
  floor: TLS + HTTP + aiohttp), and throughput with 32 reviews in flight;
- scale: 1,000 simulated agents (heartbeat every 5 s) and 100 clients
  (heartbeat every 2 s, one intercept each, so agents get snapshots): the
  manager's CPU share and RSS over a 20 s window, against the idle manager.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.certs import make_ca  # noqa: E402
from core.protocol import (  # noqa: E402
    AGENT_CONFIG_ANNOTATION,
    AgentConfig,
    AgentHello,
    ClientHello,
    Heartbeat,
    InterceptSpec,
    Request,
    TakeoverPort,
    dump_message,
)

AGENTS = 1000
CLIENTS = 100
WORKLOADS = 10
WINDOW = 20.0
SEQUENTIAL = 2000
CONCURRENT = 32
THROUGHPUT_SECONDS = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Manager:
    """``python -m webhook`` in its own process, measured through /proc."""

    def __init__(self, *, tls: tuple[str, str] | None = None) -> None:
        self.webhook_port, self.agent_port, self.client_port = free_port(), free_port(), free_port()
        env = {
            **os.environ,
            "WAYLAY_USE_CLUSTER": "false",
            "WAYLAY_WEBHOOK_HOST": "127.0.0.1",
            "WAYLAY_AGENT_HOST": "127.0.0.1",
            "WAYLAY_CLIENT_HOST": "127.0.0.1",
            "WAYLAY_WEBHOOK_PORT": str(self.webhook_port),
            "WAYLAY_AGENT_PORT": str(self.agent_port),
            "WAYLAY_CLIENT_PORT": str(self.client_port),
            "WAYLAY_MANAGER_ADDRESS": f"127.0.0.1:{self.agent_port}",
            "WAYLAY_LOG_LEVEL": "WARNING",
        }
        env.pop("WAYLAY_POD_IP", None)
        if tls:
            env["WAYLAY_TLS_CERT"], env["WAYLAY_TLS_KEY"] = tls
        self.proc = subprocess.Popen([sys.executable, "-m", "webhook"], cwd=ROOT, env=env)

    def wait_ready(self, port: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("the manager did not start")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---------------------------------------------------------------- admission


def review_body(i: int) -> bytes:
    port = TakeoverPort(
        service="web",
        service_port=80,
        target_port_name="http",
        app_container="app",
        app_port=8080,
        agent_port=9900,
    )
    config = AgentConfig(
        workload_kind="Deployment",
        workload_name="web",
        namespace="demo",
        manager_address="m:1",
        ports=[port],
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "web-",
            "namespace": "demo",
            "annotations": {AGENT_CONFIG_ANNOTATION: config.model_dump_json()},
            "ownerReferences": [
                {"kind": "ReplicaSet", "name": "web-1", "uid": "u", "controller": True}
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "demo",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "env": [{"name": f"V{n}", "value": str(n)} for n in range(10)],
                    "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
                }
            ]
        },
    }
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": f"uid-{i}",
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE",
                "namespace": "demo",
                "object": pod,
            },
        }
    ).encode()


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def admission_figures() -> dict[str, float]:
    ca = make_ca("bench")
    cert, key = ca.issue_server_cert(["127.0.0.1", "localhost"])
    manager = Manager(tls=(cert.decode(), key.decode()))
    try:
        manager.wait_ready(manager.webhook_port)
        ctx = ssl.create_default_context()
        with tempfile.NamedTemporaryFile("wb", suffix=".pem") as f:
            f.write(ca.cert_pem)
            f.flush()
            ctx.load_verify_locations(f.name)
        base = f"https://127.0.0.1:{manager.webhook_port}"
        body = review_body(0)
        headers = {"Content-Type": "application/json"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
            for _ in range(50):  # warm up
                async with s.post(base + "/mutate", data=body, headers=headers) as r:
                    assert r.status == 200
            mutate: list[float] = []
            health: list[float] = []
            for i in range(SEQUENTIAL):
                t = time.perf_counter()
                async with s.post(base + "/mutate", data=body, headers=headers) as r:
                    answer = await r.json()
                mutate.append(time.perf_counter() - t)
                assert answer["response"]["patch"], answer
                t = time.perf_counter()
                async with s.get(base + "/healthz") as r:
                    await r.read()
                health.append(time.perf_counter() - t)
                del i
            done = 0
            stop_at = time.perf_counter() + THROUGHPUT_SECONDS

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < stop_at:
                    async with s.post(base + "/mutate", data=body, headers=headers) as r:
                        await r.read()
                        done += 1

            cpu0 = manager.cpu_seconds()
            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(CONCURRENT)))
            elapsed = time.perf_counter() - t0
            cpu = manager.cpu_seconds() - cpu0
        return {
            "mutate_p50_ms": pct(mutate, 0.50),
            "mutate_p99_ms": pct(mutate, 0.99),
            "healthz_p50_ms": pct(health, 0.50),
            "healthz_p99_ms": pct(health, 0.99),
            "throughput_rps": done / elapsed,
            "manager_cpu_share": cpu / elapsed,
            "cpu_us_per_review": cpu / max(done, 1) * 1e6,
            "mutate_mean_ms": statistics.mean(mutate) * 1000,
        }
    finally:
        manager.stop()


# -------------------------------------------------------------------- scale


def agent_hello(i: int) -> AgentHello:
    port = TakeoverPort(
        service=f"svc{i % WORKLOADS}",
        service_port=80,
        app_container="app",
        app_port=8080,
        agent_port=9900,
    )
    return AgentHello(
        pod=f"w{i % WORKLOADS}-{i}",
        namespace="bench",
        pod_ip=f"10.1.{i // 250}.{i % 250}",
        workload_kind="Deployment",
        workload_name=f"w{i % WORKLOADS}",
        ports=[port],
        tunnel_port=7777,
        env={"A": "1", "B": "2"},
    )


async def scale_figures() -> dict[str, float]:
    manager = Manager()
    snapshots = 0
    stop = asyncio.Event()
    try:
        manager.wait_ready(manager.client_port)
        await asyncio.sleep(1.0)
        idle_rss = manager.rss_mb()
        agent_url = f"http://127.0.0.1:{manager.agent_port}/v1/agent"
        client_url = f"http://127.0.0.1:{manager.client_port}/v1/client"
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as s:

            async def agent(i: int) -> None:
                nonlocal snapshots
                async with s.ws_connect(agent_url, heartbeat=None) as ws:
                    await ws.send_str(dump_message(agent_hello(i)))
                    await ws.receive()  # welcome
                    next_beat = time.monotonic() + 5 * (i / AGENTS)
                    while not stop.is_set():
                        timeout = max(0.0, next_beat - time.monotonic())
                        try:
                            msg = await asyncio.wait_for(ws.receive(), timeout)
                            if msg.type == aiohttp.WSMsgType.TEXT and '"intercepts"' in msg.data:
                                snapshots += 1
                            elif msg.type != aiohttp.WSMsgType.TEXT:
                                return
                        except TimeoutError:
                            await ws.send_str(dump_message(Heartbeat()))
                            next_beat += 5.0

            async def client(i: int) -> None:
                async with s.ws_connect(client_url, heartbeat=None) as ws:
                    await ws.send_str(dump_message(ClientHello(client=f"user{i}@bench")))
                    await ws.receive()
                    spec = InterceptSpec(
                        name=f"i{i}",
                        namespace="bench",
                        workload=f"w{i % WORKLOADS}",
                        service=f"svc{i % WORKLOADS}",
                        service_port=80,
                        mechanism="http",
                        headers={"x-user": f"user{i}"},
                    )
                    await ws.send_str(
                        dump_message(Request(id=1, op="create", params={"spec": spec.model_dump()}))
                    )
                    next_beat = time.monotonic() + 2 * (i / CLIENTS)
                    while not stop.is_set():
                        timeout = max(0.0, next_beat - time.monotonic())
                        try:
                            msg = await asyncio.wait_for(ws.receive(), timeout)
                            if msg.type != aiohttp.WSMsgType.TEXT:
                                return
                        except TimeoutError:
                            await ws.send_str(dump_message(Heartbeat()))
                            next_beat += 2.0

            tasks = [asyncio.create_task(agent(i)) for i in range(AGENTS)]
            await asyncio.sleep(3.0)
            tasks += [asyncio.create_task(client(i)) for i in range(CLIENTS)]
            await asyncio.sleep(5.0)  # everyone connected, intercepts pushed
            cpu0, t0 = manager.cpu_seconds(), time.monotonic()
            await asyncio.sleep(WINDOW)
            cpu, elapsed = manager.cpu_seconds() - cpu0, time.monotonic() - t0
            rss = manager.rss_mb()
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        beats_per_s = AGENTS / 5 + CLIENTS / 2
        return {
            "cpu_share": cpu / elapsed,
            "rss_mb": rss,
            "idle_rss_mb": idle_rss,
            "kb_per_connection": (rss - idle_rss) * 1024 / (AGENTS + CLIENTS),
            "heartbeats_per_s": beats_per_s,
            "cpu_us_per_heartbeat": cpu / elapsed / beats_per_s * 1e6,
            "snapshots_pushed": snapshots,
        }
    finally:
        manager.stop()


def report(adm: dict[str, float], scale: dict[str, float]) -> str:
    return "\n".join(
        [
            "manager benchmark",
            f"  admission over TLS, keep-alive, {SEQUENTIAL} sequential reviews:",
            f"    /mutate   p50 {adm['mutate_p50_ms']:.2f} ms   p99 {adm['mutate_p99_ms']:.2f} ms",
            f"    /healthz  p50 {adm['healthz_p50_ms']:.2f} ms   p99 {adm['healthz_p99_ms']:.2f} ms"
            f"   (mutate/healthz p50 = {adm['mutate_p50_ms'] / adm['healthz_p50_ms']:.2f}x)",
            f"    throughput, {CONCURRENT} in flight: {adm['throughput_rps']:.0f} reviews/s"
            f" at {adm['manager_cpu_share'] * 100:.0f}% of one core (the load generator shares"
            " the machine)",
            f"    manager CPU per review {adm['cpu_us_per_review']:.0f} us"
            f" = capacity ~{1e6 / adm['cpu_us_per_review']:.0f} reviews/s per core",
            f"  {AGENTS} agents (5 s heartbeat) + {CLIENTS} clients"
            " (2 s heartbeat, 1 intercept each):",
            f"    manager CPU share {scale['cpu_share'] * 100:.1f}% of one core"
            f" ({scale['cpu_us_per_heartbeat']:.0f} us per heartbeat,"
            f" {scale['heartbeats_per_s']:.0f} heartbeats/s)",
            f"    manager RSS {scale['rss_mb']:.1f} MB (idle {scale['idle_rss_mb']:.1f} MB;"
            f" {scale['kb_per_connection']:.1f} KB per connection)",
            f"    snapshots pushed to agents: {scale['snapshots_pushed']:.0f}",
        ]
    )


def test_manager_benchmark() -> None:
    adm = asyncio.run(admission_figures())
    scale = asyncio.run(scale_figures())
    print("\n" + report(adm, scale))
    assert adm["mutate_p99_ms"] < 1000
    assert scale["snapshots_pushed"] >= AGENTS


if __name__ == "__main__":
    test_manager_benchmark()
