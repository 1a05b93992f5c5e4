"""One HTTPS call to an admission webhook, and the API objects it involves.

``MutatingWebhook`` parses a ``webhooks[]`` entry of a
MutatingWebhookConfiguration with the API's defaults; ``call_webhook`` POSTs an
AdmissionReview to it the way kube-apiserver does (Service address with TLS
name ``NAME.NAMESPACE.svc``, or ``url``; ``caBundle``; ``?timeout=Ns``) and
returns the parsed response. Every way the call can go wrong is a
``WebhookCallError`` (Go's ``ErrCallingWebhook``): the caller applies the
webhook's ``failurePolicy`` to it.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Callable
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "AdmissionResponse",
    "ClientConfig",
    "MutatingWebhook",
    "ResolveService",
    "RuleWithOperations",
    "ServiceReference",
    "WebhookCallError",
    "call_webhook",
]

ResolveService = Callable[["ServiceReference"], tuple[str, int]]
"""Service reference -> (host, port) to dial; raises ``LookupError`` with a reason."""


class WebhookCallError(Exception):
    """A webhook could not be called or answered nonsense (``ErrCallingWebhook``)."""

    def __init__(self, webhook: str, reason: str) -> None:
        super().__init__(f'failed calling webhook "{webhook}": {reason}')
        self.webhook = webhook


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ServiceReference(_Model):
    namespace: str
    name: str
    path: str | None = None
    port: int = 443


class ClientConfig(_Model):
    url: str | None = None
    service: ServiceReference | None = None
    ca_bundle: str | None = Field(default=None, alias="caBundle")
    """Base64 PEM; empty means the system's trust store."""


class RuleWithOperations(_Model):
    operations: list[str] = Field(default_factory=list)
    api_groups: list[str] = Field(default_factory=list, alias="apiGroups")
    api_versions: list[str] = Field(default_factory=list, alias="apiVersions")
    resources: list[str] = Field(default_factory=list)
    scope: Literal["Cluster", "Namespaced", "*"] = "*"


class MutatingWebhook(_Model):
    """One entry of ``MutatingWebhookConfiguration.webhooks``, with the API's defaults."""

    name: str
    client_config: ClientConfig = Field(alias="clientConfig")
    rules: list[RuleWithOperations] = Field(default_factory=list)
    failure_policy: Literal["Ignore", "Fail"] = Field(default="Fail", alias="failurePolicy")
    namespace_selector: dict[str, Any] = Field(default_factory=dict, alias="namespaceSelector")
    object_selector: dict[str, Any] = Field(default_factory=dict, alias="objectSelector")
    side_effects: str | None = Field(default=None, alias="sideEffects")
    timeout_seconds: int = Field(default=10, alias="timeoutSeconds")
    admission_review_versions: list[str] = Field(
        default_factory=lambda: ["v1"], alias="admissionReviewVersions"
    )
    reinvocation_policy: Literal["Never", "IfNeeded"] = Field(
        default="Never", alias="reinvocationPolicy"
    )


class AdmissionResponse(_Model):
    uid: str
    allowed: bool
    status: dict[str, Any] | None = None
    patch: str | None = None
    patch_type: str | None = Field(default=None, alias="patchType")
    warnings: list[str] = Field(default_factory=list)


class AdmissionReviewReply(_Model):
    api_version: str = Field(alias="apiVersion")
    kind: Literal["AdmissionReview"]
    response: AdmissionResponse


# --------------------------------------------------------------------- calling


class _Target(NamedTuple):
    url: str
    """What is dialled: ``https://CLUSTER-IP:PORT/PATH?timeout=Ns`` for a Service."""
    server_name: str | None
    """The TLS name to verify when it differs from the URL's host."""
    shown: str
    """The URL as kube-apiserver names it in errors (``https://NAME.NS.svc:PORT/...``)."""


def _target(hook: MutatingWebhook, resolve: ResolveService) -> _Target:
    cfg = hook.client_config
    timeout_q = f"?timeout={hook.timeout_seconds}s"
    if cfg.url:
        return _Target(cfg.url + timeout_q, None, cfg.url + timeout_q)
    if cfg.service is None:
        raise WebhookCallError(hook.name, "clientConfig has neither url nor service")
    ref = cfg.service
    path = ref.path or "/"
    dns = f"{ref.name}.{ref.namespace}.svc"
    try:
        host, port = resolve(ref)
    except LookupError as exc:
        raise WebhookCallError(hook.name, f"failed to call webhook: {exc.args[0]}")
    return _Target(
        url=f"https://{host}:{port}{path}{timeout_q}",
        server_name=dns,
        shown=f"https://{dns}:{ref.port}{path}{timeout_q}",
    )


async def call_webhook(
    hook: MutatingWebhook, review: dict[str, Any], *, resolve: ResolveService
) -> AdmissionResponse:
    """POST ``review`` to ``hook``; the response, or ``WebhookCallError``."""
    if "v1" not in hook.admission_review_versions:
        raise WebhookCallError(
            hook.name,
            "webhook does not accept v1 AdmissionReview "
            f"(admissionReviewVersions: {hook.admission_review_versions})",
        )
    target = _target(hook, resolve)
    shown = target.shown
    context = _ssl_context(hook)
    timeout = aiohttp.ClientTimeout(total=hook.timeout_seconds)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if target.server_name:
        headers["Host"] = urlsplit(shown).netloc
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(
                target.url,
                data=json.dumps(review),
                headers=headers,
                ssl=context,
                server_hostname=target.server_name,
            ) as resp,
        ):
            body = await resp.read()
            if resp.status != 200:
                text = body.decode("utf-8", "replace")[:200]
                raise WebhookCallError(
                    hook.name,
                    f"failed to call webhook: an error on the server ({text!r}) "
                    f"has prevented the request from succeeding (status {resp.status})",
                )
    except TimeoutError:
        raise WebhookCallError(
            hook.name, f'failed to call webhook: Post "{shown}": context deadline exceeded'
        )
    except aiohttp.ClientError as exc:
        raise WebhookCallError(hook.name, f'failed to call webhook: Post "{shown}": {exc}')
    try:
        return AdmissionReviewReply.model_validate_json(body).response
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise WebhookCallError(
            hook.name, f"received invalid webhook response: {where}: {first['msg']}"
        )


def _ssl_context(hook: MutatingWebhook) -> ssl.SSLContext:
    bundle = hook.client_config.ca_bundle
    if not bundle:
        return ssl.create_default_context()
    try:
        pem = base64.b64decode(bundle).decode("ascii")
        return ssl.create_default_context(cadata=pem)
    except (ValueError, ssl.SSLError) as exc:
        raise WebhookCallError(hook.name, f"invalid caBundle: {exc}")
