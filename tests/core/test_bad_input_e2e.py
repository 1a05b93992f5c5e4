"""End to end: bad input gets a clear error that says what to do, and nothing is
left half-done. Every case drives the real `waylay` CLI as a process against
the shared demo sandbox and checks the exit code, a human error (``Error:``
title plus a ``→`` hint), that no traceback reaches stdout or stderr, and the
cluster and manager state afterwards.

Covers: a missing kubeconfig (KUBECONFIG naming a missing file; no KUBECONFIG
with an empty HOME); a context whose server is a closed local port; an unknown
``--context`` ("did you mean"); RBAC denial for a ServiceAccount with no
bindings (names the verb and resource; nothing intercepted) and for the
read-only ``developer`` context running ``install``/``uninstall`` (names the
verb and resource; the installation is intact); a workload with no matching
Service (NoMatchingService with a hint; the workload is not annotated) and an
unknown workload ("did you mean"); bad flags (a non-numeric port, a
malformed header, an invalid path or header regex, an env file in a missing
or unwritable place) are refused with no intercept left behind; two daemons
racing for one port (exactly one wins, the loser's error names the holder and
the id to revoke, the loser holds nothing, and `waylay revoke ID` from the loser ends the winner's
intercept); a daemon SIGKILLed while a streamed request body is flowing to the
local server (the stream ends, traffic is back on the app within 10 s, no
intercept is left in the manager); garbage to the webhook (malformed
AdmissionReviews: a 400 Status) and to the manager's client API through a
port-forward (garbage HTTP: a 400; a malformed WebSocket hello: a
``bad-request`` error with a hint, then the close), after which a normal
intercept still works.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from core.daemon_line import LineClient
from core.kube import Kube
from sandbox.auth import Authenticator
from tests.core.e2ekit import DEVELOPER, WAYLAY, Demo, eventually, hit, local_server

NAMESPACE = "bad-input"
"""A namespace of this module's own, so the shared demo's namespaces stay as they were."""


# ------------------------------------------------------------------ helpers


def _run(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WAYLAY, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _failed(proc: subprocess.CompletedProcess[str], title: str, *hint: str) -> str:
    """Assert a clean, human failure: exit 1, ``Error: <title>``, a ``→`` hint
    containing every ``hint`` part, no traceback. Returns stderr."""
    both = proc.stdout + proc.stderr
    assert proc.returncode == 1, both
    assert "Traceback" not in both and "unexpected" not in both, both
    lines = proc.stderr.splitlines()
    errors = [n for n, line in enumerate(lines) if line.startswith("Error: ")]
    assert len(errors) == 1 and title in lines[errors[0]], both
    after = lines[errors[0] + 1 :]
    hints = [line for line in after if line.strip().startswith("→ ")]
    assert len(hints) == 1, both  # the error's own hint (warnings before it have theirs)
    for part in hint:
        assert part in proc.stderr, (part, both)
    return proc.stderr


def _kube(demo: Demo) -> Kube:
    return Kube.from_kubeconfig(demo.env["KUBECONFIG"])


def _intercepts(demo: Demo, user: str, workload: str = "orders") -> list[dict[str, Any]]:
    """Every intercept on ``workload`` in the cluster, as ``user``'s `waylay list -A` sees it
    (`list` shows the manager's intercepts through a running daemon: start one)."""
    LineClient.connect(demo.socket(user)).close()
    listed = json.loads(demo.waylay("list", "-A", "-o", "json", user=user).stdout)
    return [i for w in listed if w["name"] == workload for i in w["intercepts"]]


def _kubeconfig_with(demo: Demo, path: Path, **user: Any) -> str:
    """A copy of the demo's kubeconfig whose only context ``who`` logs in as ``user``."""
    config = yaml.safe_load(Path(demo.env["KUBECONFIG"]).read_text())
    cluster = config["contexts"][0]["context"]["cluster"]
    config["users"] = [{"name": "who", "user": user}]
    config["contexts"] = [
        {"name": "who", "context": {"cluster": cluster, "user": "who", "namespace": "shop"}}
    ]
    config["current-context"] = "who"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ------------------------------------------------------------ 1. kubeconfig


def test_missing_kubeconfig(demo: Demo, tmp_path: Path) -> None:
    env = demo.user_env("nokube", KUBECONFIG=str(tmp_path / "missing" / "config"))
    for args in (["list", "-n", "shop"], ["intercept", "orders", "-n", "shop", "--port", "1"]):
        err = _failed(_run(env, *args), "No kubeconfig found", "KUBECONFIG", "--kubeconfig")
        assert str(tmp_path / "missing" / "config") in err
    home = tmp_path / "home"
    home.mkdir()
    bare = {k: v for k, v in env.items() if k != "KUBECONFIG"}
    bare["HOME"] = str(home)
    err = _failed(_run(bare, "list"), "No kubeconfig found", "KUBECONFIG")
    assert str(home / ".kube" / "config") in err
    assert _intercepts(demo, "watch") == []


def test_unreachable_and_unknown_context(demo: Demo, tmp_path: Path) -> None:
    config = yaml.safe_load(Path(demo.env["KUBECONFIG"]).read_text())
    dead = f"https://127.0.0.1:{_free_port()}"
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = dead
    path = tmp_path / "dead.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    env = demo.user_env("dead", KUBECONFIG=str(path))
    started = time.monotonic()
    _failed(_run(env, "list", "-n", "shop"), "Cannot reach the cluster", "cluster is running")
    assert time.monotonic() - started < 60
    err = _failed(
        _run(env, "intercept", "orders", "-n", "shop", "--port", "1"), "Cannot reach the cluster"
    )
    assert dead in err
    err = _failed(
        demo.waylay("list", "--context", "sandbox-admn", check=False),
        "Context 'sandbox-admn' is not in the kubeconfig",
        "Did you mean 'sandbox-admin'?",
    )
    assert DEVELOPER in err


# ------------------------------------------------------------------ 2. RBAC


def test_rbac_denied_service_account(demo: Demo, tmp_path: Path) -> None:
    kube = _kube(demo)
    try:
        if kube.get("v1", "ServiceAccount", "nobody", "shop") is None:
            kube.create("v1", "ServiceAccount", {"metadata": {"name": "nobody"}}, "shop")
    finally:
        kube.close()
    auth = Authenticator.load(demo.dir / "sandbox" / "auth.json")
    path = _kubeconfig_with(
        demo, tmp_path / "nobody", token=auth.issue_service_account_token("shop", "nobody")
    )
    env = demo.user_env("nobody", KUBECONFIG=str(path))
    try:
        _failed(_run(env, "list", "-n", "shop"), "Not allowed to list", "Ask a cluster admin")
        err = _failed(
            _run(env, "intercept", "orders", "-n", "shop", "--port", "1"),
            "Not allowed to",
            "Ask a cluster admin for a Role granting",
        )
        assert "system:serviceaccount:shop:nobody" in err
        # names the verb and the resource, in the title and in the hint
        named = re.search(r"Error: Not allowed to (\w+) (\S+) (in namespace|cluster-wide)", err)
        assert named, err
        assert f"granting '{named[1]}' on '{named[2]}'" in err, err
        assert _intercepts(demo, "watch") == []
        _run(env, "quit")
    finally:
        kube = _kube(demo)
        try:
            kube.delete("v1", "ServiceAccount", "nobody", "shop")
        finally:
            kube.close()


def test_rbac_denied_install_and_uninstall(demo: Demo) -> None:
    install = demo.waylay("install", "--context", DEVELOPER, check=False)
    _failed(install, "Not allowed to update serviceaccounts in namespace 'waylay'", "'update'")
    uninstall = demo.waylay("uninstall", "--context", DEVELOPER, check=False)
    _failed(
        uninstall,
        "Not allowed to delete mutatingwebhookconfigurations",
        "'delete' on 'mutatingwebhookconfigurations",
    )
    kube = _kube(demo)
    try:  # the refused calls touched nothing: the installation is whole
        assert kube.get("apps/v1", "Deployment", "waylay-manager", "waylay") is not None
        assert (
            kube.get(
                "admissionregistration.k8s.io/v1",
                "MutatingWebhookConfiguration",
                "waylay-agent-injector",
            )
            is not None
        )
    finally:
        kube.close()


# --------------------------------------------------------------- 3. lookup


@contextmanager
def _lonely_deployment(demo: Demo) -> Iterator[None]:
    """A Deployment no Service selects, in this module's namespace."""
    kube = _kube(demo)
    try:
        if kube.get("v1", "Namespace", NAMESPACE) is None:
            kube.create("v1", "Namespace", {"metadata": {"name": NAMESPACE}})
        orders = kube.get("apps/v1", "Deployment", "orders", "shop")
        assert orders is not None
        template = json.loads(json.dumps(orders["spec"]["template"]))
        template["metadata"] = {"labels": {"app": "lonely"}}
        body = {
            "metadata": {"name": "lonely"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "lonely"}},
                "template": template,
            },
        }
        kube.create("apps/v1", "Deployment", body, NAMESPACE)
        yield
    finally:
        kube.delete("apps/v1", "Deployment", "lonely", NAMESPACE)
        kube.delete("v1", "Namespace", NAMESPACE)
        kube.close()


def test_no_matching_service_and_unknown_workload(demo: Demo) -> None:
    with _lonely_deployment(demo):
        proc = demo.waylay(
            "intercept", "lonely", "-n", NAMESPACE, "--port", "1", user="lookup", check=False
        )
        _failed(
            proc, f"No Service in '{NAMESPACE}' selects the pods of 'lonely'", "Create a Service"
        )
        assert "NoMatchingService" not in proc.stderr
        kube = _kube(demo)
        try:  # refused before prepare: the workload was not touched
            lonely = kube.get("apps/v1", "Deployment", "lonely", NAMESPACE)
            assert lonely is not None
            annotations = lonely["spec"]["template"]["metadata"].get("annotations") or {}
            assert not any(k.startswith("waylay.dev/") for k in annotations), annotations
        finally:
            kube.close()
    proc = demo.waylay(
        "intercept", "order", "-n", "shop", "--port", "1", user="lookup", check=False
    )
    _failed(proc, "No workload named 'order'", "Did you mean 'orders'?")
    status = json.loads(demo.waylay("status", "-o", "json", user="lookup").stdout)
    assert all(not s["intercepts"] for s in status["daemon"]["sessions"]), status


def test_bad_flags_leave_nothing(demo: Demo, tmp_path: Path) -> None:
    base = ["intercept", "orders", "-n", "shop", "--port", "1"]
    cases = [
        (["--port", "abc"], "--port 'abc': the local port must be a number"),
        (["--http-header", "nokey"], "--http-header 'nokey': use KEY=VALUE"),
        (["--http-path-regex", "("], "'(' is not a valid regular expression"),
        (["--http-header", "x-who=a("], "'a(' is not a valid regular expression"),
        (["--env-file", str(tmp_path / "no" / "x.env")], "cannot write there"),
        (["--env-json", "/proc/waylay.json"], "--env-json /proc/waylay.json: cannot write it"),
    ]
    for extra, title in cases:
        proc = demo.waylay(*base, *extra, user="flags", check=False)  # the last --port wins
        err = _failed(proc, title)
        assert err.count(title) == 1, err  # said once, not repeated as the hint
        assert _intercepts(demo, "flags") == [], (extra, err)
    assert not (tmp_path / "no").exists()
    demo.waylay("quit", user="flags")


# ------------------------------------------------------------------ 4. race


def test_two_users_race_for_one_port(demo: Demo) -> None:
    server, port = local_server("race")
    try:
        procs = {
            user: subprocess.Popen(
                [*WAYLAY, "intercept", "orders", "-n", "shop", "--port", str(port)],
                env=demo.user_env(user),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for user in ("race1", "race2")
        }
        done = {user: proc.communicate(timeout=180) for user, proc in procs.items()}
        codes = {user: procs[user].returncode for user in procs}
        assert sorted(codes.values()) == [0, 1], done
        [winner] = [u for u, c in codes.items() if c == 0]
        [loser] = [u for u, c in codes.items() if c == 1]
        out, err = done[loser]
        lost = subprocess.CompletedProcess([], 1, out, err)
        _failed(lost, "Port already intercepted", "ask them to leave it", "waylay revoke")
        [held] = _intercepts(demo, "watch")
        assert f"{held['owner']} holds global intercept '{held['id']}'" in err
        # the loser holds nothing; the winner's traffic flows
        status = json.loads(demo.waylay("status", "-o", "json", user=loser).stdout)
        assert all(not s["intercepts"] for s in status["daemon"]["sessions"]), status
        assert hit(demo.orders) == "local-race"
        # the hint's command works: the loser revokes the winner's intercept
        revoked = demo.waylay("revoke", held["id"], user=loser).stdout
        assert held["id"] in revoked
        eventually(lambda: _intercepts(demo, "watch") == [], "no intercept after the revoke")
        eventually(lambda: hit(demo.orders) == "app", "traffic back on the app after the revoke")
        _failed(
            demo.waylay("revoke", "nosuch:x", user=loser, check=False),
            "No such intercept",
            "waylay list -A -o json",
        )
        demo.waylay("quit", user=winner)
        demo.waylay("quit", user=loser)
    finally:
        server.shutdown()


# ------------------------------------------------- 5. killed mid-stream


@contextmanager
def _stream_sink() -> Iterator[tuple[int, threading.Event]]:
    """A TCP server that reads forever; the event is set once it has seen ``chunk-1``."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    seen = threading.Event()
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        data = b""
        with conn:
            conn.settimeout(0.2)
            while not stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                data += chunk
                if b"chunk-1" in data:
                    seen.set()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], seen
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_client_killed_mid_stream(demo: Demo) -> None:
    with _stream_sink() as (port, seen):
        demo.waylay("intercept", "orders", "-n", "shop", "--port", str(port), user="stream")
        host, _, svc_port = demo.orders.rpartition(":")
        conn = socket.create_connection((host, int(svc_port)), timeout=10)
        try:
            conn.sendall(
                b"POST /upload HTTP/1.1\r\nHost: orders\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            deadline = time.monotonic() + 20
            n = 0
            while not seen.is_set():  # keep the body flowing until the local side has it
                assert time.monotonic() < deadline, "the streamed body never reached local"
                n += 1
                piece = f"chunk-{n}\n".encode()
                conn.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                seen.wait(0.1)
            pid = json.loads(demo.waylay("status", "-o", "json", user="stream").stdout)["daemon"][
                "pid"
            ]
            os.kill(pid, signal.SIGKILL)
            eventually(
                lambda: all(hit(demo.orders) == "app" for _ in range(3)),
                "traffic back on the app after the daemon's SIGKILL",
                within=10,
            )
            # the half-sent request was ended, not left hanging
            conn.settimeout(10)
            try:
                while conn.recv(65536):
                    pass
            except (ConnectionResetError, BrokenPipeError):
                pass
        finally:
            conn.close()
        eventually(lambda: _intercepts(demo, "watch") == [], "no intercept left", within=15)
    demo.waylay("quit", user="stream")


# --------------------------------------------------------------- 6. garbage


def _manager_pod(kube: Kube) -> str:
    pods, _ = kube.list(
        "v1", "Pod", "waylay", label_selector="app.kubernetes.io/name=waylay-manager"
    )
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    assert running, "the manager has no running pod"
    return str(running[0]["metadata"]["name"])


def _webhook_post(address: str, body: bytes) -> tuple[int, dict[str, Any]]:
    host, _, port = address.rpartition(":")
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection(host, int(port), context=tls, timeout=10)
    try:
        conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        conn.close()


def _ws_frame(payload: bytes) -> bytes:
    """One masked WebSocket text frame (client to server), ``payload`` under 126 bytes."""
    assert len(payload) < 126
    mask = os.urandom(4)
    return (
        bytes([0x81, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"the manager closed after {data!r}"
        data += chunk
    return data


def _ws_garbage(forward: socket.socket, payload: bytes) -> dict[str, Any]:
    """Open the client API's WebSocket, send ``payload`` as the hello, return the reply."""
    key = base64.b64encode(os.urandom(16)).decode()
    forward.sendall(
        (
            "GET /v1/client HTTP/1.1\r\nHost: manager\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += _read_exact(forward, 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    forward.sendall(_ws_frame(payload))
    first, size = _read_exact(forward, 2)
    assert first & 0x0F == 1, first  # a text frame
    size &= 0x7F
    if size == 126:
        size = int.from_bytes(_read_exact(forward, 2), "big")
    reply: dict[str, Any] = json.loads(_read_exact(forward, size))
    closing, size = _read_exact(forward, 2)
    assert closing & 0x0F == 8, closing  # then the manager closes
    _read_exact(forward, size & 0x7F)  # read it all: unread bytes would reset the forward
    return reply


def test_garbage_to_webhook_and_client_api(demo: Demo) -> None:
    webhook = demo.service("waylay-manager", "https-webhook", namespace="waylay")
    malformed = [
        b"not json",
        b"[]",
        b'{"kind": "AdmissionReview"}',
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 5}}',
    ]
    for body in malformed:
        status, reply = _webhook_post(webhook, body)
        assert status == 400, reply
        assert reply["kind"] == "Status" and reply["code"] == 400, reply
        assert reply["reason"] == "BadRequest" and reply["message"], reply
    kube = _kube(demo)
    try:
        pod = _manager_pod(kube)
        for garbage in (
            b"\x00\x01garbage\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        ):
            with kube.portforward(pod, "waylay", 8082) as forward:
                forward.socket.settimeout(10)
                forward.socket.sendall(garbage)
                reply = b""
                while chunk := forward.socket.recv(4096):  # the server closes after a 400
                    reply += chunk
            assert reply.startswith(b"HTTP/1.") and b" 400 " in reply.split(b"\r\n")[0], reply
        for hello in (b"garbage", b"[1, 2]", b'{"type": "hello"}', b'{"type": "client-hello"}'):
            with kube.portforward(pod, "waylay", 8082) as forward:
                forward.socket.settimeout(10)
                answer = _ws_garbage(forward.socket, hello)
            error = answer["error"]
            assert answer["type"] == "error" and error["code"] == "bad-request", answer
            assert error["title"] == "Malformed message" and error["message"], answer
            assert "waylay install" in error["hint"], answer
    finally:
        kube.close()
    # the manager keeps serving: a normal intercept works
    server, port = local_server("after")
    try:
        demo.waylay("intercept", "orders", "-n", "shop", "--port", str(port), user="after")
        eventually(lambda: hit(demo.orders) == "local-after", "the intercept after the garbage")
        demo.waylay("leave", "orders-shop", user="after")
        demo.waylay("quit", user="after")
    finally:
        server.shutdown()
