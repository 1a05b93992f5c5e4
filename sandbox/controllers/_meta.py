"""Small helpers over plain Kubernetes JSON objects, shared by the controllers.

Label selectors, controller owner references, pod readiness and availability,
and timestamps, each written the way the real controllers read them
(``k8s.io/kubernetes/pkg/api/v1/pod``, ``pkg/controller``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "Obj",
    "clone",
    "controller_ref",
    "is_active",
    "is_available",
    "is_owned_by",
    "is_ready",
    "is_terminating",
    "key_of",
    "labels_of",
    "matches_selector",
    "now_rfc3339",
    "owner_reference",
    "parse_time",
    "ready_since",
    "selector_matches_labels",
    "until_available",
]

Obj = dict[str, Any]
"""A Kubernetes object as plain JSON."""


def now_rfc3339() -> str:
    """The current time as the API server writes timestamps (seconds, ``Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    """Parse an RFC 3339 timestamp as written by the API server; None if absent or bad."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def key_of(obj: Mapping[str, Any]) -> tuple[str, str]:
    """The (namespace, name) work-queue key of an object."""
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def selector_matches_labels(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """A Service-style selector (a plain map); an empty or absent one selects nothing."""
    if not selector:
        return False
    return all(labels.get(k) == v for k, v in selector.items())


def matches_selector(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A ``metav1.LabelSelector`` (matchLabels + matchExpressions).

    As in ``metav1.LabelSelectorAsSelector``: an absent selector selects nothing,
    an empty one everything.
    """
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def controller_ref(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The owner reference with ``controller: true``, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    """A controller owner reference to ``owner``, as the real controllers write it."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def is_owned_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == owner["metadata"].get("uid")


def is_terminating(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def is_active(pod: Mapping[str, Any]) -> bool:
    """``controller.IsPodActive``: not finished and not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not is_terminating(pod)


def _ready_condition(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return dict(cond)
    return None


def is_ready(pod: Mapping[str, Any]) -> bool:
    """``podutil.IsPodReady``: the Ready condition is True."""
    cond = _ready_condition(pod)
    return cond is not None and cond.get("status") == "True"


def ready_since(pod: Mapping[str, Any]) -> datetime | None:
    """When the pod last became Ready, or None when it is not Ready."""
    cond = _ready_condition(pod)
    if cond is None or cond.get("status") != "True":
        return None
    return parse_time(cond.get("lastTransitionTime")) or datetime.fromtimestamp(0, UTC)


def is_available(pod: Mapping[str, Any], min_ready_seconds: int, now: datetime) -> bool:
    """``podutil.IsPodAvailable``: Ready for at least ``min_ready_seconds``."""
    since = ready_since(pod)
    if since is None:
        return False
    return min_ready_seconds <= 0 or since + timedelta(seconds=min_ready_seconds) <= now


def until_available(pod: Mapping[str, Any], min_ready_seconds: int, now: datetime) -> float | None:
    """Seconds until a Ready pod becomes available; None if not Ready or already available."""
    since = ready_since(pod)
    if since is None or min_ready_seconds <= 0:
        return None
    left = (since + timedelta(seconds=min_ready_seconds) - now).total_seconds()
    return left if left > 0 else None


def clone(obj: Mapping[str, Any]) -> Obj:
    """A deep copy: objects read from the store are never mutated in place."""
    return copy.deepcopy(dict(obj))
