"""A Deployment's ``status`` computed from its ReplicaSets, as a pure function.

Ported from ``calculateStatus`` and ``syncRolloutStatus`` in
``pkg/controller/deployment``: the replica counts, the ``Available`` condition
(at least ``replicas - maxUnavailable`` available) and the ``Progressing``
condition (``ReplicaSetUpdated`` while the rollout moves,
``NewReplicaSetAvailable`` once complete, ``ProgressDeadlineExceeded`` when it
stalls past ``progressDeadlineSeconds``). ``kubectl rollout status`` reads
exactly these fields.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from ._meta import Obj, parse_time
from ._rollout import allowed_unavailable

__all__ = [
    "calculate_status",
    "deployment_complete",
    "max_unavailable_of",
    "new_condition",
    "progress_deadline",
    "set_condition",
    "sync_rollout_status",
]

_NO_DEADLINE = 2**31 - 1


def _rs_count(rs_list: list[Obj], where: str, field: str) -> int:
    return sum(int((rs.get(where) or {}).get(field) or 0) for rs in rs_list)


def max_unavailable_of(d: Mapping[str, Any]) -> int:
    """``deploymentutil.MaxUnavailable``: 0 for Recreate or zero replicas."""
    spec = d.get("spec") or {}
    strategy = spec.get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0
    rolling = strategy.get("rollingUpdate") or {}
    return allowed_unavailable(
        rolling.get("maxSurge"), rolling.get("maxUnavailable"), int(spec.get("replicas", 1))
    )


def progress_deadline(d: Mapping[str, Any]) -> int | None:
    """``progressDeadlineSeconds`` (600 when unset), or None when it is disabled."""
    value = (d.get("spec") or {}).get("progressDeadlineSeconds", 600)
    if value is None or int(value) == _NO_DEADLINE:
        return None
    return int(value)


def new_condition(kind: str, status: str, reason: str, message: str, now: str) -> Obj:
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def _get_condition(status: Mapping[str, Any], kind: str) -> Obj | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def set_condition(status: Obj, condition: Obj) -> None:
    """``SetDeploymentCondition``: replace the condition of that type, keeping the
    transition time while the status stays the same; no-op if status and reason match."""
    current = _get_condition(status, condition["type"])
    if current and (current["status"], current.get("reason")) == (
        condition["status"],
        condition.get("reason"),
    ):
        return
    if current and current["status"] == condition["status"]:
        condition = {**condition, "lastTransitionTime": current.get("lastTransitionTime")}
    others = [c for c in status.get("conditions") or [] if c.get("type") != condition["type"]]
    status["conditions"] = [*others, condition]


def _remove_condition(status: Obj, kind: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != kind]


def calculate_status(d: Mapping[str, Any], all_rs: list[Obj], new_rs: Obj | None, now: str) -> Obj:
    """``calculateStatus``: counts from the ReplicaSets plus the Available condition."""
    old: Mapping[str, Any] = d.get("status") or {}
    desired = int((d.get("spec") or {}).get("replicas", 1))
    available = _rs_count(all_rs, "status", "availableReplicas")
    unavailable = max(_rs_count(all_rs, "spec", "replicas") - available, 0)
    status: Obj = {
        "observedGeneration": (d.get("metadata") or {}).get("generation", 1),
        "replicas": _rs_count(all_rs, "status", "replicas"),
        "updatedReplicas": _rs_count([new_rs] if new_rs else [], "status", "replicas"),
        "readyReplicas": _rs_count(all_rs, "status", "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": unavailable,
        "conditions": copy.deepcopy(list(old.get("conditions") or [])),
    }
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if available >= desired - max_unavailable_of(d):
        cond = new_condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now,
        )
    else:
        cond = new_condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
        )
    set_condition(status, cond)
    return status


def deployment_complete(d: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    desired = int((d.get("spec") or {}).get("replicas", 1))
    return bool(
        status.get("updatedReplicas", 0) == desired
        and status.get("replicas", 0) == desired
        and status.get("availableReplicas", 0) == desired
        and status.get("observedGeneration", 0) >= (d.get("metadata") or {}).get("generation", 1)
    )


def _progressing(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    def old_replicas(s: Mapping[str, Any]) -> int:
        return int(s.get("replicas") or 0) - int(s.get("updatedReplicas") or 0)

    return (
        new.get("updatedReplicas", 0) > old.get("updatedReplicas", 0)
        or new.get("readyReplicas", 0) > old.get("readyReplicas", 0)
        or new.get("availableReplicas", 0) > old.get("availableReplicas", 0)
        or old_replicas(old) > old_replicas(new)
    )


def sync_rollout_status(
    d: Mapping[str, Any],
    all_rs: list[Obj],
    new_rs: Obj | None,
    *,
    now: datetime,
    stored_status: Mapping[str, Any] | None = None,
) -> tuple[Obj, float | None]:
    """``syncRolloutStatus``: the new status, and seconds until the progress
    deadline should be checked again (None when there is nothing to wait for).

    ``d["status"]`` may carry conditions set earlier in this sync (a new
    ReplicaSet was created); ``stored_status`` is the status as last written,
    against which progress is measured (defaults to ``d["status"]``).
    """
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    old: Mapping[str, Any] = stored_status if stored_status is not None else d.get("status") or {}
    status = calculate_status(d, all_rs, new_rs, stamp)
    deadline = progress_deadline(d)
    if deadline is None:
        _remove_condition(status, "Progressing")
        return _compact(status), None
    current = _get_condition(d.get("status") or {}, "Progressing")
    complete_before = (
        status["replicas"] == status["updatedReplicas"]
        and current is not None
        and current.get("reason") == "NewReplicaSetAvailable"
    )
    rs_name = (new_rs or {}).get("metadata", {}).get("name")
    if not complete_before:
        if deployment_complete(d, status):
            set_condition(
                status,
                new_condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{rs_name}" has successfully progressed.',
                    stamp,
                ),
            )
        elif _progressing(old, status):
            message = (
                f'ReplicaSet "{rs_name}" is progressing.'
                if rs_name
                else "Deployment is progressing."
            )
            cond = new_condition("Progressing", "True", "ReplicaSetUpdated", message, stamp)
            if current is not None:
                if current["status"] == "True":
                    cond["lastTransitionTime"] = current.get("lastTransitionTime")
                _remove_condition(status, "Progressing")
            set_condition(status, cond)
        elif _timed_out(current, deadline, now):
            set_condition(
                status,
                new_condition(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{rs_name}" has timed out progressing.',
                    stamp,
                ),
            )
    return _compact(status), _recheck_after(d, status, deadline, now)


def _timed_out(current: Mapping[str, Any] | None, deadline: int, now: datetime) -> bool:
    if current is None or current.get("reason") in (
        "NewReplicaSetAvailable",
        "ProgressDeadlineExceeded",
    ):
        return False
    since = parse_time(current.get("lastUpdateTime"))
    return since is not None and since + timedelta(seconds=deadline) < now


def _recheck_after(
    d: Mapping[str, Any], status: Mapping[str, Any], deadline: int, now: datetime
) -> float | None:
    """``requeueStuckDeployment``: when an unfinished rollout would time out."""
    cond = _get_condition(status, "Progressing")
    if cond is None or cond.get("reason") in ("NewReplicaSetAvailable", "ProgressDeadlineExceeded"):
        return None
    if deployment_complete(d, status):
        return None
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return None
    return max((since + timedelta(seconds=deadline) - now).total_seconds(), 0.0) + 1.0


def _compact(status: Obj) -> Obj:
    """Drop zero counts and empty conditions, as the API server's omitempty does."""
    counts = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
    out = {k: v for k, v in status.items() if not (k in counts and v == 0)}
    if not out.get("unavailableReplicas"):
        out.pop("unavailableReplicas", None)
    if not out.get("conditions"):
        out.pop("conditions", None)
    return out
