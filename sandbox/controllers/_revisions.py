"""A Deployment's ReplicaSets: template identity, revisions and replica annotations.

What ``pkg/controller/deployment/util`` keeps on the objects themselves:
``pod-template-hash`` (templates equal but for it are the same revision),
``deployment.kubernetes.io/revision`` (and ``revision-history`` when an old
ReplicaSet comes back), the Deployment's own annotations copied onto its new
ReplicaSet, and ``desired-replicas``/``max-replicas``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._hash import canonical
from ._meta import Obj, clone, parse_time
from ._rollout import resolve_fenceposts

__all__ = [
    "DESIRED",
    "HASH_LABEL",
    "MAX_REPLICAS",
    "REVISION",
    "REVISION_HISTORY",
    "created_order",
    "equal_ignore_hash",
    "max_surge",
    "replicas",
    "revision",
    "rolling_params",
    "set_new_rs_annotations",
    "set_replicas_annotations",
]

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
_NOT_COPIED = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
}


def _without_hash(template: Mapping[str, Any]) -> Obj:
    t = clone(template)
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return t


def equal_ignore_hash(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """``EqualIgnoreHash``: two pod templates equal but for ``pod-template-hash``
    (nulls and empty values count as absent, as in Go)."""
    return bool(canonical(_without_hash(a)) == canonical(_without_hash(b)))


def revision(obj: Mapping[str, Any]) -> int:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, "")
    try:
        return int(value)
    except ValueError:
        return 0


def replicas(obj: Mapping[str, Any]) -> int:
    return int((obj.get("spec") or {}).get("replicas", 1))


def created_order(obj: Mapping[str, Any]) -> tuple[float, str]:
    when = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    return (when.timestamp() if when else 0.0, obj["metadata"]["name"])


def rolling_params(d: Mapping[str, Any]) -> tuple[int | str | None, int | str | None]:
    rolling = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    return rolling.get("maxSurge"), rolling.get("maxUnavailable")


def max_surge(d: Mapping[str, Any]) -> int:
    strategy = ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate")
    if strategy != "RollingUpdate":
        return 0
    surge, _ = resolve_fenceposts(*rolling_params(d), replicas(d))
    return surge


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    annotations = rs["metadata"].setdefault("annotations", {})
    changed = False
    for k, v in ((DESIRED, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if annotations.get(k) != v:
            annotations[k] = v
            changed = True
    return changed


def set_new_rs_annotations(d: Mapping[str, Any], rs: Obj, number: int, *, exists: bool) -> bool:
    """``SetNewReplicaSetAnnotations``: copy the Deployment's annotations, bump the revision."""
    annotations = rs["metadata"].setdefault("annotations", {})
    changed = False
    for k, v in ((d.get("metadata") or {}).get("annotations") or {}).items():
        if k not in _NOT_COPIED and annotations.get(k) != v:
            annotations[k] = v
            changed = True
    old = annotations.get(REVISION, "")
    if (int(old) if old.isdigit() else 0) < number:
        annotations[REVISION] = str(number)
        if old:
            history = [h for h in annotations.get(REVISION_HISTORY, "").split(",") if h]
            annotations[REVISION_HISTORY] = ",".join([*history, old])
        changed = True
    if not exists and set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)):
        changed = True
    return changed
