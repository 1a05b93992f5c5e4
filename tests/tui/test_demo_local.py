"""What `waylay demo` runs around the TUI, and how the TUI takes its local port.

Covers: the demo's workstation server answers any method over real HTTP,
naming the request, saying it was served on this machine and which personal
intercept header it carried; when its preferred port is taken it binds a
free one instead; leaving the ``with`` block closes the port (nothing left
running); ``python -m tui --local-port N`` becomes the wizard's default local
port, else the Service's target port stays the default.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from core.demo_local import WorkstationServer, reply_text
from tests.tui.fakes import demo_workloads
from tui.wizard.plan import Wizard

W = {w.name: w for w in demo_workloads()}


def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> str:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
        return str(response.read().decode())


def test_replies_name_the_request_and_where_it_was_served() -> None:
    with WorkstationServer(preferred_port=0) as server:
        text = fetch(f"http://127.0.0.1:{server.port}/orders/42")
        assert "GET /orders/42 was served on your machine" in text
        assert f"127.0.0.1:{server.port}" in text
        headers = {"x-waylay-intercept-id": "s1:orders-shop"}
        text = fetch(f"http://127.0.0.1:{server.port}/pay", "POST", headers)
        assert "POST /pay" in text and "s1:orders-shop" in text


def test_a_taken_preferred_port_falls_back_to_a_free_one() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with WorkstationServer(preferred_port=busy) as server:
            assert server.port not in (busy, 0)
            assert "served on your machine" in fetch(f"http://127.0.0.1:{server.port}/")


def test_leaving_closes_the_port() -> None:
    with WorkstationServer(preferred_port=0) as server:
        url = f"http://127.0.0.1:{server.port}/"
        fetch(url)
    with pytest.raises(urllib.error.URLError):
        fetch(url)


def test_reply_without_a_header_names_no_intercept() -> None:
    assert "personal intercept" not in reply_text("GET", "/", 8080, None)


def test_local_port_flag_is_the_wizard_default() -> None:
    assert Wizard(W["orders"], "single-user", "s1", local_port=8181).steps()[0].default == "8181"
    assert Wizard(W["orders"], "single-user", "s1").steps()[0].default == "80"
