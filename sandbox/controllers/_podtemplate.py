"""Pods made from a controller's pod template, and which pods go first.

``pod_from_template`` is ``controller.GetPodFromTemplate``: labels, annotations
and spec from the template and a controller owner reference. Scheduling is
not the controllers' business: the sandbox's kubelet binds unscheduled pods to
its node, as the scheduler would.
``deletion_order`` is ``controller.ActivePodsWithRanks``: the pods a
ReplicaSet should delete first when it scales down.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ._meta import Obj, clone, is_ready, owner_reference, parse_time, ready_since

__all__ = ["deletion_order", "pod_from_template"]

_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}
_EPOCH = datetime.fromtimestamp(0, UTC)


def pod_from_template(
    template: Mapping[str, Any],
    owner: Mapping[str, Any],
    *,
    name: str | None = None,
    generate_name: str | None = None,
    extra_labels: Mapping[str, str] | None = None,
) -> Obj:
    tmeta = template.get("metadata") or {}
    meta: dict[str, Any] = {
        "namespace": owner["metadata"]["namespace"],
        "labels": {**(tmeta.get("labels") or {}), **(extra_labels or {})},
        "ownerReferences": [owner_reference(owner)],
    }
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    if name:
        meta["name"] = name
    if generate_name:
        meta["generateName"] = generate_name
    spec = clone(template.get("spec") or {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def _restarts(pod: Mapping[str, Any]) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return max((int(s.get("restartCount") or 0) for s in statuses), default=0)


def _deletion_rank(pod: Mapping[str, Any]) -> tuple[Any, ...]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    ready = is_ready(pod)
    since = ready_since(pod) or _EPOCH
    created = parse_time((pod.get("metadata") or {}).get("creationTimestamp")) or _EPOCH
    return (
        1 if spec.get("nodeName") else 0,  # unscheduled first
        _PHASE_RANK.get(status.get("phase") or "Pending", 0),  # Pending < Unknown < Running
        1 if ready else 0,  # not ready first
        -since.timestamp() if ready else 0.0,  # ready for less time first
        -_restarts(pod),  # more restarts first
        -created.timestamp(),  # newer first
    )


def deletion_order(pods: list[Obj]) -> list[Obj]:
    """The pods sorted so the best ones to delete come first."""
    return sorted(pods, key=_deletion_rank)
