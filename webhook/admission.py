"""The HTTPS admission endpoint that answers the API server's AdmissionReviews.

``POST /mutate`` takes an ``admission.k8s.io/v1`` AdmissionReview and answers
with :func:`webhook.inject.build_response`. Bad input never yields a 500:

- a body that is too big, not JSON, not an AdmissionReview, of another
  ``apiVersion`` or without a ``request`` gets a 400 whose body is a
  ``metav1.Status`` saying what was wrong;
- a bug while building the patch lets the pod through unchanged, with a
  warning (the webhook fails open, like its ``failurePolicy: Ignore``).

``GET /healthz`` answers ``ok`` for probes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from webhook.inject import AgentResources, InjectionPolicy, build_response
from webhook.review import ADMISSION_API_VERSION, AdmissionResponse, AdmissionReview

log = logging.getLogger(__name__)

MAX_REVIEW_BYTES = 3 * 1024 * 1024
"""Above any object etcd accepts (1.5 MiB) with its old copy."""


@dataclass(frozen=True)
class InjectorSettings:
    manager_address: str
    """``host:port`` of the agent API, given to every agent."""
    agent_image: str
    policy: InjectionPolicy = InjectionPolicy.ON_DEMAND
    resources: AgentResources = field(default_factory=AgentResources)


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


def _bad_request(message: str) -> web.Response:
    return web.json_response(status_body(400, "BadRequest", message), status=400)


def admission_app(settings: InjectorSettings) -> web.Application:
    app = web.Application(client_max_size=MAX_REVIEW_BYTES)

    async def mutate(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_REVIEW_BYTES:
            return _bad_request(
                f"AdmissionReview of {request.content_length} bytes is over the "
                f"{MAX_REVIEW_BYTES}-byte limit"
            )
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _bad_request(f"AdmissionReview is over the {MAX_REVIEW_BYTES}-byte limit")
        review, problem = _parse(raw)
        if review is None or review.request is None:
            return _bad_request(problem or "AdmissionReview has no request")
        try:
            response = build_response(
                review=review,
                manager_address=settings.manager_address,
                agent_image=settings.agent_image,
                policy=settings.policy,
                resources=settings.resources,
            )
        except Exception as e:  # fail open: never block a pod because of us
            log.exception("building the admission response failed")
            response = AdmissionResponse(
                uid=review.request.uid,
                allowed=True,
                warnings=[f"waylay: agent not injected, internal error: {e}"],
            )
        return web.json_response(review.reply(response))

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_post("/mutate", mutate)
    app.router.add_get("/healthz", healthz)
    return app


def _parse(raw: bytes) -> tuple[AdmissionReview | None, str]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        return None, f"body is not JSON: {e}"
    if not isinstance(body, dict):
        return None, "body is not a JSON object; expected an AdmissionReview"
    version = body.get("apiVersion")
    if body.get("kind") != "AdmissionReview":
        return None, f"expected kind AdmissionReview, got {body.get('kind')!r}"
    if version != ADMISSION_API_VERSION:
        return None, (
            f"unsupported AdmissionReview version {version!r}: waylay speaks "
            f"{ADMISSION_API_VERSION} (admissionReviewVersions: [v1])"
        )
    try:
        return AdmissionReview.model_validate(body), ""
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return None, f"malformed AdmissionReview at {where}: {first['msg']}"
