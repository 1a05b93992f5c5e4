"""Mutating admission: calling MutatingWebhookConfigurations over HTTPS.

What kube-apiserver's mutating webhook dispatcher does, for the requests the
sandbox serves:

1. webhooks are taken from every MutatingWebhookConfiguration in the store,
   configurations in name order, webhooks in their listed order;
2. a webhook is called when one of its ``rules`` matches (operations,
   apiGroups, apiVersions, resources incl. ``pods/*`` and ``*/scale``, scope)
   and its ``namespaceSelector`` (against the namespace's labels) and
   ``objectSelector`` (against the new or the old object's labels) match;
3. the call is an AdmissionReview v1 POST to the Service (its clusterIP and
   port, or one ready endpoint: ``sandbox.webhook_routing``; TLS name
   ``NAME.NAMESPACE.svc``) or to ``url``, verified against ``caBundle``,
   bounded by ``timeoutSeconds``;
4. a failed call (unreachable, timeout, TLS, bad or mismatched response) is
   skipped under ``failurePolicy: Ignore`` and is a 500 ``Internal error
   occurred: failed calling webhook "NAME": ...`` under ``Fail``; a denial is
   the webhook's own status; a ``JSONPatch`` response is applied;
5. webhooks with ``reinvocationPolicy: IfNeeded`` are called once more when a
   webhook after them changed the object.

``matchConditions`` (CEL) are not evaluated: webhooks that have them are
called as if every condition were true.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import jsonpatch
from pydantic import ValidationError

from sandbox.admission_call import (
    MutatingWebhook,
    ResolveService,
    RuleWithOperations,
    WebhookCallError,
    call_webhook,
)
from sandbox.auth import UserInfo
from sandbox.errors import ApiError, bad_request, not_found
from sandbox.resources import by_key
from sandbox.selectors import match_label_selector
from sandbox.webhook_routing import Routing, ServiceRouter

__all__ = ["MutatingAdmission", "ObjectReader", "rule_matches"]

log = logging.getLogger(__name__)

CONFIGURATIONS = "mutatingwebhookconfigurations.admissionregistration.k8s.io"
_OPTIONS_KIND = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}


class ObjectReader(Protocol):
    """The part of ``sandbox.store.Store`` admission reads."""

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None: ...

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]: ...


# ----------------------------------------------------------------- matching


def _split(resource: str) -> tuple[str, str]:
    name, _, sub = resource.partition("/")
    return name, sub


def rule_matches(
    rule: RuleWithOperations,
    *,
    operation: str,
    group: str,
    version: str,
    resource: str,
    subresource: str,
    namespace: str | None,
) -> bool:
    """kube-apiserver's ``rules.Matcher``."""
    if not ({"*", operation} & set(rule.operations)):
        return False
    if not ({"*", group} & set(rule.api_groups)):
        return False
    if not ({"*", version} & set(rule.api_versions)):
        return False
    for entry in rule.resources:
        res, sub = _split(entry)
        if res in ("*", resource) and sub in ("*", subresource):
            break
    else:
        return False
    is_namespaces = resource == "namespaces" and group == ""
    if rule.scope == "Namespaced":
        return not is_namespaces and bool(namespace)
    if rule.scope == "Cluster":
        return is_namespaces or not namespace
    return True


def _labels(obj: dict[str, Any] | None) -> dict[str, str] | None:
    if obj is None:
        return None
    return dict((obj.get("metadata") or {}).get("labels") or {})


# ----------------------------------------------------------------- dispatcher


@dataclass(frozen=True)
class _Request:
    """What is being admitted (Go's ``admission.Attributes``)."""

    operation: str
    group: str
    version: str
    kind: str
    plural: str
    subresource: str
    namespace: str | None
    old: dict[str, Any] | None
    user: UserInfo
    dry_run: bool

    @property
    def is_namespace(self) -> bool:
        return self.plural == "namespaces" and self.group == ""

    def review(self, uid: str, obj: dict[str, Any]) -> dict[str, Any]:
        """The AdmissionReview v1 sent to a webhook."""
        kind = {"group": self.group, "version": self.version, "kind": self.kind}
        gvr = {"group": self.group, "version": self.version, "resource": self.plural}
        name = (obj.get("metadata") or {}).get("name") or (
            (self.old or {}).get("metadata") or {}
        ).get("name")
        request: dict[str, Any] = {
            "uid": uid,
            "kind": kind,
            "resource": gvr,
            "requestKind": kind,
            "requestResource": gvr,
            "name": name or "",  # empty for generateName: no name exists yet
            "operation": self.operation,
            "userInfo": self.user.to_review(),
            "object": obj if self.operation != "DELETE" else None,
            "oldObject": self.old,
            "dryRun": self.dry_run,
            "options": {
                "kind": _OPTIONS_KIND.get(self.operation, "CreateOptions"),
                "apiVersion": "meta.k8s.io/v1",
            },
        }
        if self.subresource:
            request["subResource"] = self.subresource
            request["requestSubResource"] = self.subresource
        if self.namespace:
            request["namespace"] = self.namespace
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


class MutatingAdmission:
    """Runs every matching mutating webhook on a create, update or delete.

    Webhooks that name a Service are dialled as ``routing`` says (see
    ``sandbox.webhook_routing``: the clusterIP, or an endpoint when the
    Service proxy cannot listen on the port); ``resolve_service``, when
    given, replaces that.
    """

    def __init__(
        self,
        store: ObjectReader,
        *,
        routing: Routing = "auto",
        resolve_service: ResolveService | None = None,
    ) -> None:
        self.store = store
        self._resolve = resolve_service or ServiceRouter(store, routing)

    async def admit(
        self,
        *,
        operation: str,
        resource: str,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        namespace: str | None,
        user: UserInfo,
        dry_run: bool,
        subresource: str = "",
        warnings: list[str] | None = None,
    ) -> dict[str, Any]:
        """The object after every matching webhook; raises ``ApiError`` on denial/failure.

        ``resource`` is a resource key (``"pods"``, ``"deployments.apps"``).
        Webhook warnings are appended to ``warnings`` when it is given.
        """
        hooks = self._webhooks()
        if not hooks:
            return obj
        rtype = by_key(resource)
        req = _Request(
            operation=operation,
            group=rtype.group,
            version=rtype.version,
            kind=rtype.kind,
            plural=rtype.plural,
            subresource=subresource,
            namespace=namespace or None,
            old=old,
            user=user,
            dry_run=dry_run,
        )
        # Round 1 re-runs the IfNeeded webhooks that saw the object before a later
        # webhook changed it (kube-apiserver's webhookReinvokeContext).
        current = obj
        previously_invoked: set[int] = set()
        reinvoke: set[int] = set()
        for round_ in (0, 1):
            if round_ == 1 and not reinvoke:
                break
            for index, hook in enumerate(hooks):
                if round_ == 1 and index not in reinvoke:
                    continue
                if not self._applies(hook, req, current):
                    continue
                if dry_run and hook.side_effects not in ("None", "NoneOnDryRun"):
                    raise bad_request(f'admission webhook "{hook.name}" does not support dry run')
                changed, current = await self._call(hook, req, current, warnings)
                if changed:
                    reinvoke |= previously_invoked
                    previously_invoked = set()
                if hook.reinvocation_policy == "IfNeeded":
                    previously_invoked.add(index)
        return current

    # ------------------------------------------------------------ internals

    def _webhooks(self) -> list[MutatingWebhook]:
        configs = sorted(self.store.list(CONFIGURATIONS), key=lambda c: c["metadata"]["name"])
        hooks: list[MutatingWebhook] = []
        for config in configs:
            for raw in config.get("webhooks") or []:
                try:
                    hooks.append(MutatingWebhook.model_validate(raw))
                except ValidationError as exc:
                    # Never crash admission over one bad entry; say which one.
                    log.warning(
                        "skipping webhook %r of MutatingWebhookConfiguration %r: %s",
                        raw.get("name") if isinstance(raw, dict) else raw,
                        config["metadata"]["name"],
                        exc,
                    )
        return hooks

    def _applies(self, hook: MutatingWebhook, req: _Request, obj: dict[str, Any]) -> bool:
        """Rules, then namespaceSelector, then objectSelector (the real order)."""
        if not any(
            rule_matches(
                rule,
                operation=req.operation,
                group=req.group,
                version=req.version,
                resource=req.plural,
                subresource=req.subresource,
                namespace=req.namespace,
            )
            for rule in hook.rules
        ):
            return False
        if not self._namespace_matches(hook, req, obj):
            return False
        if not hook.object_selector:
            return True
        return match_label_selector(hook.object_selector, _labels(obj) or {}) or (
            req.old is not None and match_label_selector(hook.object_selector, _labels(req.old))
        )

    def _namespace_matches(self, hook: MutatingWebhook, req: _Request, obj: dict[str, Any]) -> bool:
        if not req.namespace and not req.is_namespace:
            return True  # cluster-scoped objects are never exempted
        if not hook.namespace_selector:
            return True
        if req.is_namespace:
            labels = _labels(obj) if obj else _labels(req.old)
        else:
            assert req.namespace is not None
            ns_obj = self.store.get("namespaces", None, req.namespace)
            if ns_obj is None:
                raise not_found("namespaces", req.namespace)
            labels = _labels(ns_obj)
        return match_label_selector(hook.namespace_selector, labels or {})

    async def _call(
        self,
        hook: MutatingWebhook,
        req: _Request,
        obj: dict[str, Any],
        warnings: list[str] | None,
    ) -> tuple[bool, dict[str, Any]]:
        """Call one webhook; ``(changed, object)``. Raises ``ApiError`` as the server would."""
        uid = str(uuid.uuid4())
        try:
            response = await call_webhook(hook, req.review(uid, obj), resolve=self._resolve)
            if response.uid != uid:
                raise WebhookCallError(
                    hook.name,
                    "received invalid webhook response: "
                    f'expected response.uid="{uid}", got "{response.uid}"',
                )
        except WebhookCallError as exc:
            if hook.failure_policy == "Ignore":
                return False, obj
            raise ApiError(
                500,
                "InternalError",
                f"Internal error occurred: {exc}",
                details={"causes": [{"message": str(exc)}]},
            )
        if warnings is not None:
            warnings.extend(response.warnings)
        if not response.allowed:
            raise _denial(hook.name, response.status)
        if not response.patch or req.operation == "DELETE":
            return False, obj
        patched = _apply_patch(hook.name, response.patch_type, response.patch, obj)
        return patched != obj, patched


def _apply_patch(
    webhook: str, patch_type: str | None, patch: str, obj: dict[str, Any]
) -> dict[str, Any]:
    """A webhook's base64 JSONPatch applied to ``obj`` (a failure is always a 500)."""
    if patch_type != "JSONPatch":
        raise ApiError(
            500,
            "InternalError",
            f'Internal error occurred: unsupported patch type "{patch_type}" '
            f'from webhook "{webhook}"',
        )
    try:
        ops = json.loads(base64.b64decode(patch))
        patched = jsonpatch.apply_patch(obj, ops, in_place=False)
    except (ValueError, jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise ApiError(500, "InternalError", f"Internal error occurred: {exc}")
    if not isinstance(patched, dict):
        raise ApiError(
            500,
            "InternalError",
            f'Internal error occurred: webhook "{webhook}" patched the object '
            "into something that is not an object",
        )
    return patched


def _denial(webhook: str, status: dict[str, Any] | None) -> ApiError:
    """``webhookerrors.ToStatusErr``: the webhook's own Status, with a 4xx code."""
    status = dict(status or {})
    code = int(status.get("code") or 0)
    if code < 400:
        code = 400
    denied_by = f'admission webhook "{webhook}" denied the request'
    if status.get("message"):
        message = f"{denied_by}: {status['message']}"
    elif status.get("reason"):
        message = f"{denied_by}: {status['reason']}"
    else:
        message = f"{denied_by} without explanation"
    return ApiError(code, str(status.get("reason") or ""), message, details=status.get("details"))
