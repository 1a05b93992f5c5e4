"""Small helpers shared by the sandbox API server tests."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

from sandbox.server import Sandbox

T = TypeVar("T")


@contextmanager
def serving(box: Sandbox, *, thread_name: str) -> Iterator[asyncio.AbstractEventLoop]:
    """Run ``box`` on a fresh event loop in a daemon thread and give that loop.

    A failed start is raised here (after at most 60 s). On leaving, the sandbox
    is stopped, the loop and thread end, and the sandbox's directory is removed.
    """
    loop = asyncio.new_event_loop()
    started: Future[None] = Future()

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def start() -> None:
            try:
                await box.start()
            except BaseException as exc:
                started.set_exception(exc)
                raise
            started.set_result(None)

        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, name=thread_name, daemon=True)
    thread.start()
    started.result(timeout=60)
    try:
        yield loop
    finally:
        asyncio.run_coroutine_threadsafe(box.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        shutil.rmtree(box.directory, ignore_errors=True)


def wait_for(
    condition: Callable[[], T], *, timeout: float = 20.0, what: str = "", interval: float = 0.05
) -> T:
    """Poll ``condition`` every ``interval`` seconds until it returns something truthy;
    fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}: {last!r}")


def deployment(
    name: str, *, replicas: int = 1, image: str = "waylay/demo-http-echo:1.0"
) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "ports": [{"name": "http", "containerPort": 8080}],
                        }
                    ]
                },
            },
        },
    }


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels or {}},
        "data": data,
    }


def raw_request(
    sandbox: Any,
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
    user: str = "admin",
) -> tuple[int, Any]:
    """One HTTPS request with a bearer token; returns (status, parsed JSON body)."""
    import json
    import ssl
    import urllib.error
    import urllib.request

    ctx = ssl.create_default_context(cafile=str(sandbox.kubeconfig.parent / "ca.crt"))
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        sandbox.url + path,
        data=data,
        method=method,
        headers={"Content-Type": content_type, "Authorization": f"Bearer {sandbox.token(user)}"},
    )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=20) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
