"""End to end: the `waylay` CLI against the sandbox's demo cluster, real processes and traffic.

Covers: a global intercept on `orders` (three replicas) sends every request
to a local server and `leave` returns them to the app; two users (admin and
the read-only `developer` context, each with their own daemon) hold personal
`auto` intercepts on the same port at once and each gets only their tagged
requests while untagged ones reach the app; a preview URL (served from the
workstation through the sandbox's TLS ingress) reaches the local server and
dies with its intercept.

The demo sandbox (manager installed by the admin) is the session's shared
``demo`` fixture (tests/core/conftest.py).
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from collections import Counter

from tests.core.e2ekit import Demo, hit, local_server


def test_global_then_leave(demo: Demo) -> None:
    server, port = local_server("a")
    try:
        out = demo.waylay("intercept", "orders", "-n", "shop", "--port", str(port)).stdout
        assert "Intercept 'orders-shop'" in out and "global" in out
        assert Counter(hit(demo.orders) for _ in range(30)) == {"local-a": 30}
        demo.waylay("leave", "orders-shop")
        assert Counter(hit(demo.orders) for _ in range(10)) == {"app": 10}
    finally:
        server.shutdown()


def _header(demo: Demo, user: str) -> str:
    status = json.loads(demo.waylay("status", "-o", "json", user=user).stdout)
    [session] = status["daemon"]["sessions"]
    [info] = session["intercepts"]
    return str(info["spec"]["headers"]["x-waylay-intercept-id"])


def test_two_users_personal_auto(demo: Demo) -> None:
    server_a, port_a = local_server("a")
    server_b, port_b = local_server("b")
    try:
        demo.waylay(
            "intercept",
            "orders",
            "-n",
            "shop",
            "--port",
            str(port_a),
            "--http-header",
            "auto",
            user="a",
        )
        demo.waylay(
            "intercept",
            "orders",
            "-n",
            "shop",
            "--port",
            str(port_b),
            "--http-header",
            "auto",
            "--context",
            "sandbox-developer",
            user="b",
        )
        ha, hb = _header(demo, "a"), _header(demo, "b")
        assert ha != hb
        assert Counter(hit(demo.orders, ha) for _ in range(10)) == {"local-a": 10}
        assert Counter(hit(demo.orders, hb) for _ in range(10)) == {"local-b": 10}
        assert Counter(hit(demo.orders) for _ in range(10)) == {"app": 10}
        demo.waylay("quit", user="a")
        demo.waylay("quit", user="b")
        assert Counter(hit(demo.orders, ha) for _ in range(5)) == {"app": 5}
    finally:
        server_a.shutdown()
        server_b.shutdown()


def _get_preview(url: str) -> tuple[int, str]:
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection("127.0.0.1", parsed.port, timeout=20)
    try:
        conn.request("GET", "/", headers={"Host": parsed.netloc})
        reply = conn.getresponse()
        return reply.status, reply.read(3000).decode(errors="replace")
    finally:
        conn.close()


def test_preview_url(demo: Demo) -> None:
    server, port = local_server("p")
    try:
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
            user="p",
        ).stdout
        url = json.loads(out)["intercept"]["spec"]["preview_url"]
        assert url and url.startswith("http://")
        # the manager tells the agents asynchronously: allow it a moment to reach them
        deadline = time.monotonic() + 10
        while _get_preview(url) != (200, "local-p"):
            assert time.monotonic() < deadline, _get_preview(url)
            time.sleep(0.1)
        assert [_get_preview(url) for _ in range(5)] == [(200, "local-p")] * 5
        assert hit(demo.orders) == "app"
        demo.waylay("leave", "orders-shop", user="p")
        status, body = _get_preview(url)
        assert status == 404 and "not active" in body
    finally:
        server.shutdown()
