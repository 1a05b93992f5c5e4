"""The arithmetic of a Deployment rollout, as pure functions.

Ported from ``k8s.io/kubernetes/pkg/controller/deployment/util``: how far a
RollingUpdate may surge above and dip below the desired replica count, how many
replicas the new ReplicaSet gets next, and how many old replicas may go. Every
function takes plain numbers or ``RS`` tuples so the tests can walk a rollout
step by step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "RS",
    "allowed_unavailable",
    "new_rs_replicas",
    "old_scale_down_plan",
    "resolve_fenceposts",
    "scaled_value",
    "unhealthy_cleanup_plan",
]


@dataclass(frozen=True)
class RS:
    """What the rollout math needs to know about one ReplicaSet."""

    name: str
    replicas: int
    """``spec.replicas``"""
    available: int = 0
    """``status.availableReplicas``"""


def scaled_value(value: int | str | None, total: int, *, round_up: bool, default: str) -> int:
    """``intstr.GetScaledValueFromIntOrPercent``: an int, or a percentage of ``total``.

    Raises ValueError for a string that is not ``N%``, as the real helper does.
    """
    if value is None:
        value = default
    if isinstance(value, bool):
        raise ValueError(f"invalid value for IntOrString: {value!r}")
    if isinstance(value, int):
        return value
    text = value.strip()
    if not text.endswith("%") or not text[:-1].isdigit():
        raise ValueError(f'invalid value for IntOrString: invalid value "{value}": must be N%')
    percent = int(text[:-1])
    scaled = percent * total / 100
    return math.ceil(scaled) if round_up else math.floor(scaled)


def resolve_fenceposts(
    max_surge: int | str | None, max_unavailable: int | str | None, desired: int
) -> tuple[int, int]:
    """``ResolveFenceposts``: (surge, unavailable); never both zero.

    Surge rounds up and unavailable rounds down, so a rollout always makes
    progress; the defaults are 25% each.
    """
    surge = scaled_value(max_surge, desired, round_up=True, default="25%")
    unavailable = scaled_value(max_unavailable, desired, round_up=False, default="25%")
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def allowed_unavailable(
    max_surge: int | str | None, max_unavailable: int | str | None, desired: int
) -> int:
    """``MaxUnavailable`` of a RollingUpdate Deployment, capped at ``desired``."""
    if desired == 0:
        return 0
    _, unavailable = resolve_fenceposts(max_surge, max_unavailable, desired)
    return min(unavailable, desired)


def new_rs_replicas(
    *,
    desired: int,
    max_surge: int | str | None,
    max_unavailable: int | str | None,
    all_rs: list[RS],
    new_rs: RS,
) -> int:
    """``NewRSNewReplicas`` for RollingUpdate: the new ReplicaSet's next size.

    Grow while the total stays within ``desired + surge``, never past ``desired``.
    """
    surge, _ = resolve_fenceposts(max_surge, max_unavailable, desired)
    current = sum(rs.replicas for rs in all_rs)
    max_total = desired + surge
    if current >= max_total:
        return new_rs.replicas
    scale_up = min(max_total - current, desired - new_rs.replicas)
    return new_rs.replicas + max(scale_up, 0)


def unhealthy_cleanup_plan(old_rs: list[RS], max_cleanup: int) -> dict[str, int]:
    """``cleanupUnhealthyReplicas``: shrink old ReplicaSets by their unavailable replicas.

    ``old_rs`` is oldest first. Returns the new size of every ReplicaSet it shrinks.
    """
    plan: dict[str, int] = {}
    total = 0
    for rs in old_rs:
        if total >= max_cleanup:
            break
        if rs.replicas == 0 or rs.available >= rs.replicas:
            continue
        count = min(max_cleanup - total, rs.replicas - rs.available)
        plan[rs.name] = rs.replicas - count
        total += count
    return plan


def old_scale_down_plan(
    *,
    desired: int,
    max_surge: int | str | None,
    max_unavailable: int | str | None,
    new_rs: RS | None,
    old_rs: list[RS],
) -> dict[str, int]:
    """``reconcileOldReplicaSets``: the new sizes of old ReplicaSets this step.

    First unhealthy old replicas go (they cost no availability), then healthy
    ones while at least ``desired - maxUnavailable`` stay available. ``old_rs``
    is oldest first.
    """
    if sum(rs.replicas for rs in old_rs) == 0:
        return {}
    all_rs = [*old_rs, *([new_rs] if new_rs else [])]
    all_count = sum(rs.replicas for rs in all_rs)
    min_available = desired - allowed_unavailable(max_surge, max_unavailable, desired)
    new_unavailable = (new_rs.replicas - new_rs.available) if new_rs else 0
    max_scaled_down = all_count - min_available - new_unavailable
    if max_scaled_down <= 0:
        return {}
    plan = unhealthy_cleanup_plan(old_rs, max_scaled_down)
    after = [RS(rs.name, plan.get(rs.name, rs.replicas), rs.available) for rs in old_rs]
    available = sum(rs.available for rs in after) + (new_rs.available if new_rs else 0)
    if available <= min_available:
        return plan
    to_scale_down = available - min_available
    done = 0
    for rs in after:
        if done >= to_scale_down:
            break
        if rs.replicas == 0:
            continue
        count = min(rs.replicas, to_scale_down - done)
        plan[rs.name] = rs.replicas - count
        done += count
    return plan
