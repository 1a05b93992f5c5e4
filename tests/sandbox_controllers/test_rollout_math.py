"""The pure parts of the Deployment controller.

Covers: int-or-percent scaling (surge rounds up, unavailable rounds down, bad
strings rejected); fenceposts never both zero; the new ReplicaSet's next size
stays within replicas+maxSurge and never passes replicas; old ReplicaSets are
scaled down only while replicas-maxUnavailable stay available, unhealthy
replicas first, oldest ReplicaSet first; a whole rollout simulated step by step
keeps both bounds and finishes; pod-template-hash is stable, changes with the
template and the collision count, and uses the real controller's alphabet; the
Deployment status and its Available/Progressing conditions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sandbox.controllers._deployment_status import sync_rollout_status
from sandbox.controllers._hash import compute_hash, fnv1a_32, safe_encode
from sandbox.controllers._rollout import (
    RS,
    allowed_unavailable,
    new_rs_replicas,
    old_scale_down_plan,
    resolve_fenceposts,
    scaled_value,
)


@pytest.mark.parametrize(
    ("value", "total", "up", "expected"),
    [
        (3, 10, True, 3),
        ("25%", 10, True, 3),
        ("25%", 10, False, 2),
        ("0%", 7, True, 0),
        ("100%", 3, False, 3),
        ("33%", 3, True, 1),
    ],
)
def test_scaled_value(value: int | str, total: int, up: bool, expected: int) -> None:
    assert scaled_value(value, total, round_up=up, default="25%") == expected


def test_scaled_value_rejects_bad_strings() -> None:
    with pytest.raises(ValueError, match="must be N%"):
        scaled_value("abc", 4, round_up=True, default="25%")


def test_fenceposts() -> None:
    assert resolve_fenceposts(None, None, 4) == (1, 1)
    assert resolve_fenceposts("25%", "25%", 10) == (3, 2)
    assert resolve_fenceposts(0, 0, 5) == (0, 1)  # never stuck
    assert resolve_fenceposts("10%", "10%", 1) == (1, 0)
    assert allowed_unavailable(1, 10, 3) == 3  # capped at replicas
    assert allowed_unavailable(1, 1, 0) == 0


def test_new_replicaset_grows_within_surge() -> None:
    new = RS("new", 0)
    assert (
        new_rs_replicas(
            desired=4, max_surge=1, max_unavailable=1, all_rs=[RS("old", 4), new], new_rs=new
        )
        == 1
    )
    assert (
        new_rs_replicas(
            desired=4, max_surge=1, max_unavailable=1, all_rs=[RS("old", 5), new], new_rs=new
        )
        == 0
    )
    # Never more than desired, even with room to surge.
    new = RS("new", 3)
    assert (
        new_rs_replicas(
            desired=4, max_surge="100%", max_unavailable=0, all_rs=[RS("old", 0), new], new_rs=new
        )
        == 4
    )


def test_old_replicasets_shrink_while_enough_stay_available() -> None:
    # 4 wanted, 1 may be unavailable; the new ReplicaSet's one pod is not ready yet.
    plan = old_scale_down_plan(
        desired=4, max_surge=1, max_unavailable=1, new_rs=RS("new", 1, 0), old_rs=[RS("old", 4, 4)]
    )
    assert plan == {"old": 3}
    # Nothing may go while only the minimum is available.
    plan = old_scale_down_plan(
        desired=4, max_surge=1, max_unavailable=1, new_rs=RS("new", 2, 0), old_rs=[RS("old", 3, 3)]
    )
    assert plan == {}


def test_unhealthy_old_replicas_go_first_and_oldest_first() -> None:
    plan = old_scale_down_plan(
        desired=4,
        max_surge=0,
        max_unavailable=1,
        new_rs=RS("new", 0, 0),
        old_rs=[RS("older", 2, 2), RS("old", 2, 1)],
    )
    # The unavailable replica of "old" goes (free), then one healthy from the oldest.
    assert plan == {"old": 1}
    plan = old_scale_down_plan(
        desired=2,
        max_surge=0,
        max_unavailable=1,
        new_rs=RS("new", 0, 0),
        old_rs=[RS("older", 1, 1), RS("old", 2, 2)],
    )
    assert plan == {"older": 0, "old": 1}  # 3 available, 1 must stay: the oldest empties first


@pytest.mark.parametrize(
    ("desired", "surge", "unavailable"),
    [(4, 1, 1), (10, "25%", "25%"), (3, 0, 1), (5, 2, 0), (1, "25%", "25%")],
)
def test_simulated_rollout_keeps_bounds_and_finishes(
    desired: int, surge: int | str, unavailable: int | str
) -> None:
    max_surge, max_unavail = resolve_fenceposts(surge, unavailable, desired)
    old, new = RS("old", desired, desired), RS("new", 0, 0)
    for _ in range(100):
        if new.replicas == desired and old.replicas == 0 and new.available == desired:
            break
        target = new_rs_replicas(
            desired=desired,
            max_surge=surge,
            max_unavailable=unavailable,
            all_rs=[old, new],
            new_rs=new,
        )
        new = RS("new", target, new.available)
        plan = old_scale_down_plan(
            desired=desired, max_surge=surge, max_unavailable=unavailable, new_rs=new, old_rs=[old]
        )
        if "old" in plan:
            old = RS("old", plan["old"], min(old.available, plan["old"]))
        assert old.replicas + new.replicas <= desired + max_surge
        assert old.available + new.available >= desired - max_unavail
        new = RS("new", new.replicas, new.replicas)  # the kubelet makes every new pod ready
    else:
        pytest.fail("rollout did not finish")


def test_pod_template_hash() -> None:
    template = {
        "metadata": {"labels": {"app": "a"}},
        "spec": {"containers": [{"name": "c", "image": "x:1"}]},
    }
    h = compute_hash(template)
    assert h == compute_hash({"spec": template["spec"], "metadata": template["metadata"]})
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10
    changed = {**template, "spec": {"containers": [{"name": "c", "image": "x:2"}]}}
    assert compute_hash(changed) != h
    assert compute_hash(template, 1) != h
    # Nulls and empty values are Go's zero values: the same template.
    with_nulls = {
        "metadata": {**template["metadata"], "creationTimestamp": None, "annotations": {}}
    }
    assert compute_hash({**template, **with_nulls}) == h
    assert fnv1a_32(b"") == 0x811C9DC5 and fnv1a_32(b"a") == 0xE40C292C  # FNV-1a test vectors
    assert safe_encode("0123456789") == "456789bcdf"


def _rs(name: str, spec: int, replicas: int, ready: int, available: int) -> dict[str, object]:
    return {
        "metadata": {"name": name},
        "spec": {"replicas": spec},
        "status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": available},
    }


def _deployment(replicas: int, status: dict[str, object] | None = None) -> dict[str, object]:
    return {
        "metadata": {"name": "d", "generation": 2},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": 60,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1},
            },
        },
        "status": status or {},
    }


def test_status_during_and_after_a_rollout() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    old, new = _rs("d-old", 3, 3, 3, 3), _rs("d-new", 1, 1, 0, 0)
    status, recheck = sync_rollout_status(
        _deployment(3, {"replicas": 3, "updatedReplicas": 0}), [old, new], new, now=now
    )
    assert (
        status["replicas"] == 4
        and status["updatedReplicas"] == 1
        and status["observedGeneration"] == 2
    )
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Available"]["status"] == "True"
    assert conditions["Progressing"]["reason"] == "ReplicaSetUpdated"
    assert conditions["Progressing"]["message"] == 'ReplicaSet "d-new" is progressing.'
    assert recheck == pytest.approx(61.0)
    done, recheck = sync_rollout_status(
        _deployment(3, status), [_rs("d-new", 3, 3, 3, 3)], _rs("d-new", 3, 3, 3, 3), now=now
    )
    assert {c["type"]: c["reason"] for c in done["conditions"]}[
        "Progressing"
    ] == "NewReplicaSetAvailable"
    assert recheck is None
    late = now + timedelta(seconds=120)
    stuck, _ = sync_rollout_status(_deployment(3, status), [old, new], new, now=late)
    progressing = {c["type"]: c for c in stuck["conditions"]}["Progressing"]
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
