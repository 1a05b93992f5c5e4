"""End to end: intercepts catch traffic on connections the ingress pooled before them.

The demo's ingress controller keeps keep-alive upstream connections per
Service (like nginx); its access log names each request's upstream connection
by its local port. Against the shared demo sandbox (real processes), with the
agent already in the ``orders`` pods:

- requests through the ingress to ``orders`` fill its pool (several at once
  open new connections, which the agent relays raw), and requests one after
  the other reuse those pooled connections;
- a personal ``--http-header=auto`` intercept made after that (via the CLI)
  gets the tagged requests through the ingress at the local server while
  untagged ones reach the app; the agent logs that it arms its raw
  connections to switch to HTTP routing, and tagged requests are carried over
  connections the ingress had opened before the intercept existed; after
  ``leave`` tagged requests reach the app again;
- a preview URL made after the pool exists reaches the local server, over a
  connection pooled before it.

The local servers speak HTTP/1.1 keep-alive (an HTTP/1.0 server's answers
close the ingress's connection after each intercepted request).
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kubernetes import client, config

from core.protocol import AGENT_CONTAINER
from tests.core.e2ekit import Demo, eventually

SHOP = "shop.waylay.local"
SWITCH = "switch to HTTP routing"
HEADER = "x-waylay-intercept-id"


def local_server(name: str) -> tuple[ThreadingHTTPServer, int]:
    """An HTTP/1.1 keep-alive server on 127.0.0.1 answering ``local-<name>`` to every GET
    (the ingress may keep using a connection whose requests this server answers)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = f"local-{name}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def _get(
    target: str, path: str, host: str, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    address, _, port = target.rpartition(":")
    conn = http.client.HTTPConnection(address, int(port), timeout=20)
    try:
        conn.request("GET", path, headers={"Host": host, **(headers or {})})
        reply = conn.getresponse()
        return reply.status, reply.read(3000).decode(errors="replace")
    finally:
        conn.close()


def _is_app(reply: tuple[int, str]) -> bool:
    status, body = reply
    return status == 200 and json.loads(body).get("app") == "orders"


def _logs(demo: Demo, namespace: str, app: str, container: str) -> str:
    api = config.new_client_from_config(config_file=demo.env["KUBECONFIG"])
    try:
        core = client.CoreV1Api(api)
        pods = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
        return "\n".join(
            core.read_namespaced_pod_log(p.metadata.name, namespace, container=container)
            for p in pods
            if p.status.phase == "Running" and container in [c.name for c in p.spec.containers]
        )
    finally:
        api.close()


def _ingress_log(demo: Demo) -> str:
    return _logs(demo, "ingress", "ingress-controller", "controller")


def _upstream_ports(demo: Demo, tag: str) -> dict[str, int]:
    """Tagged request -> the local port of the ingress's upstream connection it used."""
    pattern = re.compile(rf'"GET \S*?/({re.escape(tag)}-[\w-]+)\S*" \d+ -> \S+ [\d.]+ms via :(\d+)')
    return {m.group(1): int(m.group(2)) for m in pattern.finditer(_ingress_log(demo))}


def _header(demo: Demo, user: str) -> str:
    status = json.loads(demo.waylay("status", "-o", "json", user=user).stdout)
    [session] = status["daemon"]["sessions"]
    [info] = session["intercepts"]
    return str(info["spec"]["headers"][HEADER])


def _wait(check: Callable[[], bool], what: str, within: float = 20.0) -> None:
    eventually(check, what, within)


def _logged(demo: Demo, tag: str, names: set[str]) -> set[int]:
    """The upstream connections (local ports) the tagged requests ``names`` used."""
    _wait(lambda: names <= set(_upstream_ports(demo, tag)), "the ingress logged the requests")
    return {port for name, port in _upstream_ports(demo, tag).items() if name in names}


def _warm(demo: Demo, ingress: str, tag: str, count: int) -> tuple[set[int], set[int]]:
    """Use the ingress's orders pool: ``count`` requests at once (so it opens new
    connections if it holds fewer idle ones), then ``count`` one after the other.
    Returns the ports of the connections they used, and of those opened now."""
    before = {int(port) for port in re.findall(r" via :(\d+)", _ingress_log(demo))}
    # a streamed reply takes ~300 ms: the requests are in flight together
    with ThreadPoolExecutor(count) as pool:
        replies = list(
            pool.map(
                lambda n: _get(ingress, f"/orders/{tag}-warm-{n}/stream?chunks=3", SHOP),
                range(count),
            )
        )
    assert all(status == 200 for status, _ in replies), replies
    used = _logged(demo, tag, {f"{tag}-warm-{n}" for n in range(count)})
    for n in range(count):
        reply = _get(ingress, f"/orders/{tag}-again-{n}", SHOP)
        assert _is_app(reply), reply
    again = _logged(demo, tag, {f"{tag}-again-{n}" for n in range(count)})
    # sequential requests reuse the pooled connections (the demo's traffic shares them)
    assert again <= used | before, (again, used)
    return used | again, used - before


def _ensure_agent(demo: Demo, user: str, port: int) -> None:
    """Put the agent in the orders pods (a no-op if it is there) and leave it dormant."""
    demo.waylay(
        "intercept", "orders", "-n", "shop", "--port", str(port), "--http-header", "auto", user=user
    )
    demo.waylay("leave", "orders-shop", user=user)


def test_personal_intercept_on_pooled_connections(demo: Demo) -> None:
    ingress = demo.service("ingress", "http", namespace="ingress")
    server, port = local_server("pooled")
    tag = uuid.uuid4().hex[:10]
    try:
        _ensure_agent(demo, "pool", port)
        # the rollout (if any) is over when every untagged request is the app's again
        _wait(lambda: all(_is_app(_get(ingress, "/orders/", SHOP)) for _ in range(5)), "orders")
        # more requests at once than the pool can hold idle (32, like nginx), so the
        # ingress must open new connections whatever earlier tests left in the pool;
        # the agent relays those raw (no intercept yet)
        pooled, opened = _warm(demo, ingress, tag, 40)
        assert opened, "the ingress opened no new upstream connection"
        switches = _logs(demo, "shop", "orders", AGENT_CONTAINER).count(SWITCH)

        demo.waylay(
            "intercept",
            "orders",
            "-n",
            "shop",
            "--port",
            str(port),
            "--http-header",
            "auto",
            user="pool",
        )
        tagged = {HEADER: _header(demo, "pool")}
        _wait(
            lambda: _get(ingress, f"/orders/{tag}-first", SHOP, tagged) == (200, "local-pooled"),
            "a tagged request at the local server",
        )
        for n in range(10):
            assert _get(ingress, f"/orders/{tag}-tagged-{n}", SHOP, tagged) == (200, "local-pooled")
            assert _is_app(_get(ingress, f"/orders/{tag}-plain-{n}", SHOP))

        # the agent armed the raw connections it had (the ingress's pooled ones) ...
        assert _logs(demo, "shop", "orders", AGENT_CONTAINER).count(SWITCH) > switches
        # ... and tagged requests came over connections the ingress opened before
        used = _logged(demo, tag, {f"{tag}-tagged-{n}" for n in range(10)})
        assert used & pooled, (used, pooled)
        demo.waylay("leave", "orders-shop", user="pool")
        assert _is_app(_get(ingress, f"/orders/{tag}-after", SHOP, tagged))
    finally:
        demo.waylay("quit", user="pool", check=False)
        server.shutdown()
        server.server_close()


def _get_preview(url: str, path: str) -> tuple[int, str]:
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection("127.0.0.1", parsed.port, timeout=20)
    try:
        conn.request("GET", path, headers={"Host": parsed.netloc})
        reply = conn.getresponse()
        return reply.status, reply.read(3000).decode(errors="replace")
    finally:
        conn.close()


def test_preview_url_on_pooled_connections(demo: Demo) -> None:
    ingress = demo.service("ingress", "http", namespace="ingress")
    server, port = local_server("preview")
    tag = uuid.uuid4().hex[:10]
    try:
        _ensure_agent(demo, "pv", port)
        _wait(lambda: all(_is_app(_get(ingress, "/orders/", SHOP)) for _ in range(5)), "orders")
        _warm(demo, ingress, tag, 8)
        # every upstream connection the ingress had used before the intercept (the
        # pool may hold more than the 8 just used; any of them may carry the preview)
        pooled = {int(p) for p in re.findall(r" via :(\d+)", _ingress_log(demo))}
        out = demo.waylay(
            "intercept",
            "orders",
            "-n",
            "shop",
            "--port",
            str(port),
            "--http-header",
            "auto",
            "--preview-url",
            "-o",
            "json",
            user="pv",
        ).stdout
        url = json.loads(out)["intercept"]["spec"]["preview_url"]
        assert url and url.startswith("http://")
        deadline = time.monotonic() + 20
        while (got := _get_preview(url, f"/orders/{tag}-first")) != (200, "local-preview"):
            assert time.monotonic() < deadline, got
            time.sleep(0.1)
        for n in range(8):
            assert _get_preview(url, f"/orders/{tag}-preview-{n}") == (200, "local-preview")
        assert _is_app(_get(ingress, f"/orders/{tag}-plain", SHOP))
        used = _logged(demo, tag, {f"{tag}-preview-{n}" for n in range(8)})
        assert used & pooled, (used, pooled)
    finally:
        demo.waylay("quit", user="pv", check=False)
        server.shutdown()
        server.server_close()
