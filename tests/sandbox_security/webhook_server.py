"""A real HTTPS admission webhook for the tests, answering by URL path.

``/inject`` adds the ``waylay-agent`` container; ``/slow`` answers only when the
test ends; ``/wrong-uid`` answers with another uid; ``/deny`` refuses with 403
"no thanks"; ``/label`` adds label ``stamped=yes`` once; ``/count`` sets
annotation ``calls`` to how often it was called; ``/error`` answers HTTP 500;
``/garbage`` answers JSON that is not an AdmissionReview; anything else allows
as is.
Every AdmissionReview received is kept in ``reviews[path]``. ``hook`` builds a
webhook configuration entry that calls this server.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from core.certs import CA, make_ca
from tests.sandbox_security.tls import server_context


@dataclass
class WebhookServer:
    port: int
    ca: CA
    reviews: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def requests(self, path: str) -> list[dict[str, Any]]:
        return [r["request"] for r in self.reviews.get(path, [])]


def hook(
    webhook: WebhookServer,
    name: str,
    path: str,
    *,
    rules: list[dict[str, Any]] | None = None,
    ca: CA | None = None,
    url: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """One entry of a MutatingWebhookConfiguration's ``webhooks`` calling ``webhook`` at ``path``.

    Reached through Service ``waylay/hook`` (on the webhook's port), or by URL with
    ``url=True``; the caBundle is ``ca`` or the webhook's own; pods are matched on
    CREATE unless ``rules`` say otherwise; ``extra`` adds fields (timeoutSeconds, ...).
    """
    client: dict[str, Any] = {
        "caBundle": base64.b64encode((ca or webhook.ca).cert_pem).decode(),
    }
    if url:
        client["url"] = f"https://localhost:{webhook.port}{path}"
    else:
        client["service"] = {
            "namespace": "waylay",
            "name": "hook",
            "path": path,
            "port": webhook.port,
        }
    return {
        "name": name,
        "clientConfig": client,
        "rules": rules
        or [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
            }
        ],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        **extra,
    }


def _allow(review: dict[str, Any], patch: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": review["request"]["uid"], "allowed": True}
    if patch is not None:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


SIDECAR = {"name": "waylay-agent", "image": "waylay/agent:dev"}


def _handler(server: WebhookServer) -> web.RequestHandler:
    async def handle(request: web.Request) -> web.Response:
        review = await request.json()
        path = request.path
        server.reviews.setdefault(path, []).append(review)
        obj = review["request"]["object"]
        if path == "/inject":
            return web.json_response(
                _allow(review, [{"op": "add", "path": "/spec/containers/-", "value": SIDECAR}])
            )
        if path == "/error":
            return web.Response(status=500, text="boom")
        if path == "/garbage":
            return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "Nope"})
        if path == "/slow":
            await server.release.wait()
            return web.json_response(_allow(review))
        if path == "/wrong-uid":
            body = _allow(review)
            body["response"]["uid"] = "not-the-uid"
            return web.json_response(body)
        if path == "/deny":
            body = _allow(review)
            body["response"]["allowed"] = False
            body["response"]["status"] = {
                "code": 403,
                "message": "no thanks",
                "reason": "Forbidden",
            }
            return web.json_response(body)
        if path == "/label":
            labels = obj["metadata"].get("labels") or {}
            if labels.get("stamped") == "yes":
                return web.json_response(_allow(review))
            value: Any = "yes"
            target = "/metadata/labels/stamped"
            if "labels" not in obj["metadata"]:
                target, value = "/metadata/labels", {"stamped": "yes"}
            return web.json_response(
                _allow(review, [{"op": "add", "path": target, "value": value}])
            )
        if path == "/count":
            calls = len(server.reviews[path])
            patch = [{"op": "add", "path": "/metadata/annotations", "value": {"calls": str(calls)}}]
            return web.json_response(_allow(review, patch))
        return web.json_response(_allow(review))

    return handle


@asynccontextmanager
async def serve_webhook(hosts: list[str]) -> AsyncIterator[WebhookServer]:
    """Serve on 127.0.0.1 (free port) with a fresh CA's certificate for ``hosts``."""
    ca = make_ca("webhook-test-ca")
    cert, key = ca.issue_server_cert(hosts)
    server = WebhookServer(port=0, ca=ca)
    app = web.Application()
    app.router.add_post("/{tail:.*}", _handler(server))
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context(cert, key))
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()
