"""The HTTPS admission server (``webhook.admission``) over real TLS.

Covers: a valid review gets a JSONPatch response with the request's uid over
TLS verified against a test CA; malformed JSON, non-objects, wrong kind,
unknown apiVersion, a missing request and oversized bodies each get a 400
whose body is a ``metav1.Status`` naming the problem (never a 500); a fuzzed
stream of garbage bodies never yields a 5xx; ``/healthz`` answers.
"""

from __future__ import annotations

import json
import random
import ssl
from collections.abc import AsyncIterator

import aiohttp
import anyio
import pytest
import trustme

from tests.manager.pods import agent_config, named_port, pod, review
from webhook.admission import MAX_REVIEW_BYTES, InjectorSettings, admission_app
from webhook.http import serve


@pytest.fixture
async def webhook_url() -> AsyncIterator[tuple[str, ssl.SSLContext]]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    app = admission_app(InjectorSettings(manager_address="m:8081", agent_image="waylay/agent"))
    async with anyio.create_task_group() as tg:
        host, port = await tg.start(serve, app, "127.0.0.1", 0, server_ctx)
        yield f"https://{host}:{port}", client_ctx
        tg.cancel_scope.cancel()


async def post(url: str, ctx: ssl.SSLContext, body: bytes) -> tuple[int, dict[str, object]]:
    with anyio.fail_after(10):
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                url + "/mutate",
                data=body,
                ssl=ctx,
                headers={"Content-Type": "application/json"},
            ) as resp,
        ):
            return resp.status, await resp.json()


async def test_valid_review_is_answered_with_a_patch(
    webhook_url: tuple[str, ssl.SSLContext],
) -> None:
    url, ctx = webhook_url
    status, body = await post(
        url, ctx, json.dumps(review(pod(agent_config(named_port())))).encode()
    )
    assert status == 200
    assert body["kind"] == "AdmissionReview"
    response = body["response"]
    assert isinstance(response, dict)
    assert response["uid"] == "uid-1" and response["allowed"] is True
    assert response["patchType"] == "JSONPatch" and response["patch"]


async def test_healthz(webhook_url: tuple[str, ssl.SSLContext]) -> None:
    url, ctx = webhook_url
    with anyio.fail_after(10):
        async with aiohttp.ClientSession() as s, s.get(url + "/healthz", ssl=ctx) as resp:
            assert resp.status == 200 and await resp.text() == "ok"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"kind": "Pod", "apiVersion": "v1"}).encode(), "kind AdmissionReview"),
        (
            json.dumps({**review(None), "apiVersion": "admission.k8s.io/v1beta1"}).encode(),
            "unsupported AdmissionReview version",
        ),
        (
            json.dumps({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}).encode(),
            "no request",
        ),
        (
            json.dumps({**review(None), "request": {"object": {}}}).encode(),
            "malformed AdmissionReview at request.uid",
        ),
        (b"x" * (MAX_REVIEW_BYTES + 1), "limit"),
    ],
)
async def test_bad_reviews_get_a_400_status(
    webhook_url: tuple[str, ssl.SSLContext], body: bytes, needle: str
) -> None:
    url, ctx = webhook_url
    status, answer = await post(url, ctx, body)
    assert status == 400
    assert answer["kind"] == "Status" and answer["code"] == 400
    assert needle in str(answer["message"])


async def test_garbage_never_yields_a_5xx(webhook_url: tuple[str, ssl.SSLContext]) -> None:
    url, ctx = webhook_url
    rng = random.Random(5)
    good = json.dumps(review(pod(agent_config(named_port())))).encode()
    async with aiohttp.ClientSession() as session:
        for _ in range(60):
            cut = bytearray(good[: rng.randrange(len(good))])
            for _ in range(rng.randrange(4)):
                if cut:
                    cut[rng.randrange(len(cut))] = rng.randrange(256)
            with anyio.fail_after(10):
                async with session.post(url + "/mutate", data=bytes(cut), ssl=ctx) as resp:
                    assert resp.status < 500
