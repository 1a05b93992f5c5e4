"""The Deployment controller against an in-process sandbox cluster.

Covers: a Deployment gets a ReplicaSet ``<name>-<pod-template-hash>`` whose
selector, template labels and pods carry ``pod-template-hash``, owned by the
Deployment, with revision 1 on both; status counts and the Available and
Progressing conditions (``NewReplicaSetAvailable`` once every replica is
available); observedGeneration; an image change creates a second ReplicaSet
(revision 2) and, with maxSurge=1/maxUnavailable=1 on 4 replicas, the rollout
never has more than 5 replicas specified nor fewer than 3 pods ready, and ends
with the old ReplicaSet at 0; percentages resolve (25% of 4 = 1); ``kubectl
rollout restart``'s template annotation is a new revision; a rollback to an old
template reuses its ReplicaSet with the next revision; Recreate never runs old
and new pods together; scaling a finished Deployment scales its ReplicaSet;
revisionHistoryLimit prunes old ReplicaSets; an unready rollout reports
``ProgressDeadlineExceeded`` after ``progressDeadlineSeconds``; ScalingReplicaSet
Events are recorded; a paused Deployment follows a scale change but rolls out
its new template only once resumed.
"""

from __future__ import annotations

from typing import Any

from sandbox.cluster import Cluster

from .helpers import deployment, is_ready, mark_ready, pods, set_image, until

DEPLOY = "deployments.apps"
RS = "replicasets.apps"
REVISION = "deployment.kubernetes.io/revision"


def get(cluster: Cluster, resource: str, name: str) -> dict[str, Any]:
    obj = cluster.store.get(resource, "default", name)
    assert obj is not None, f"{resource} {name} is missing"
    return obj


def replicasets(cluster: Cluster, app: str) -> list[dict[str, Any]]:
    return [
        rs
        for rs in cluster.store.list(RS, "default")
        if (rs["metadata"].get("labels") or {}).get("app") == app
    ]


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return {}


def rolled_out(cluster: Cluster, name: str) -> bool:
    """What ``kubectl rollout status`` checks."""
    d = get(cluster, DEPLOY, name)
    s = d.get("status") or {}
    want = d["spec"]["replicas"]
    return (
        s.get("observedGeneration", 0) >= d["metadata"]["generation"]
        and s.get("updatedReplicas", 0) >= want
        and s.get("replicas", 0) <= s.get("updatedReplicas", 0)
        and s.get("availableReplicas", 0) >= s.get("updatedReplicas", 0)
    )


async def ready_all(cluster: Cluster, app: str, until_done: str | None = None) -> None:
    """Play the kubelet: make every pod of ``app`` Ready until the Deployment rolled out."""
    name = until_done or app
    while not (
        rolled_out(cluster, name)
        and condition(get(cluster, DEPLOY, name), "Progressing").get("reason")
        == "NewReplicaSetAvailable"
    ):
        pending = await until(
            cluster,
            lambda: (
                [
                    p
                    for p in pods(cluster, app=app)
                    if not is_ready(p) and not p["metadata"].get("deletionTimestamp")
                ]
                or (
                    rolled_out(cluster, name)
                    and condition(get(cluster, DEPLOY, name), "Progressing").get("reason")
                    == "NewReplicaSetAvailable"
                )
            ),
            what=f"{name} to make progress",
        )
        if isinstance(pending, list):
            await mark_ready(cluster, pending[0])


async def test_first_rollout(cluster: Cluster) -> None:
    d = await cluster.create(DEPLOY, deployment("hello", 3))
    (rs,) = await until(cluster, lambda: replicasets(cluster, "hello"))
    pod_hash = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"hello-{pod_hash}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "hello", "pod-template-hash": pod_hash}
    assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == pod_hash
    assert rs["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
    assert rs["metadata"]["ownerReferences"][0]["controller"] is True
    await ready_all(cluster, "hello")
    d = get(cluster, DEPLOY, "hello")
    rs = get(cluster, RS, rs["metadata"]["name"])
    assert d["metadata"]["annotations"][REVISION] == "1"
    assert rs["metadata"]["annotations"][REVISION] == "1"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "3"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "4"
    status = d["status"]
    assert status["replicas"] == status["updatedReplicas"] == status["readyReplicas"] == 3
    assert status["availableReplicas"] == 3 and status["observedGeneration"] == 1
    assert condition(d, "Available")["status"] == "True"
    assert condition(d, "Available")["reason"] == "MinimumReplicasAvailable"
    progressing = condition(d, "Progressing")
    assert progressing["status"] == "True"
    assert progressing["message"] == f'ReplicaSet "hello-{pod_hash}" has successfully progressed.'
    assert all(
        p["metadata"]["labels"]["pod-template-hash"] == pod_hash for p in pods(cluster, app="hello")
    )


async def test_rolling_update_respects_surge_and_unavailability(cluster: Cluster) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}
    await cluster.create(DEPLOY, deployment("hello", 4, strategy=strategy))
    await ready_all(cluster, "hello")
    (first,) = replicasets(cluster, "hello")

    worst = {"specified": 0, "ready": 4}

    def watch(event: str, resource: str, obj: dict[str, Any]) -> None:
        specified = sum(rs["spec"]["replicas"] for rs in replicasets(cluster, "hello"))
        ready = sum(
            1
            for p in pods(cluster, app="hello")
            if is_ready(p) and not p["metadata"].get("deletionTimestamp")
        )
        worst["specified"] = max(worst["specified"], specified)
        worst["ready"] = min(worst["ready"], ready)

    cluster.subscribe(watch)
    await set_image(cluster, DEPLOY, "hello", "demo/hello:2")
    await until(cluster, lambda: len(replicasets(cluster, "hello")) == 2)
    await ready_all(cluster, "hello")
    cluster.unsubscribe(watch)

    assert worst["specified"] <= 5, worst
    assert worst["ready"] >= 3, worst
    old = get(cluster, RS, first["metadata"]["name"])
    (new,) = [
        rs
        for rs in replicasets(cluster, "hello")
        if rs["metadata"]["uid"] != first["metadata"]["uid"]
    ]
    assert old["spec"]["replicas"] == 0
    assert new["spec"]["replicas"] == 4
    assert new["metadata"]["annotations"][REVISION] == "2"
    assert get(cluster, DEPLOY, "hello")["metadata"]["annotations"][REVISION] == "2"
    images = {p["spec"]["containers"][0]["image"] for p in pods(cluster, app="hello")}
    assert images == {"demo/hello:2"}


async def test_percentages_and_default_strategy(cluster: Cluster) -> None:
    # Defaults are 25%/25%: on 4 replicas, surge 1 and unavailable 1.
    await cluster.create(DEPLOY, deployment("hello", 4))
    await ready_all(cluster, "hello")
    await set_image(cluster, DEPLOY, "hello", "demo/hello:2")
    new = await until(
        cluster,
        lambda: [
            rs
            for rs in replicasets(cluster, "hello")
            if rs["metadata"]["annotations"].get(REVISION) == "2"
        ],
    )
    # The first step: the new ReplicaSet surges by one, the old one drops by one.
    await until(
        cluster, lambda: get(cluster, RS, new[0]["metadata"]["name"])["spec"]["replicas"] == 2
    )
    old = [
        rs
        for rs in replicasets(cluster, "hello")
        if rs["metadata"]["uid"] != new[0]["metadata"]["uid"]
    ]
    assert old[0]["spec"]["replicas"] == 3
    await ready_all(cluster, "hello")


async def test_restart_and_rollback_make_new_revisions(cluster: Cluster) -> None:
    await cluster.create(DEPLOY, deployment("hello", 1))
    await ready_all(cluster, "hello")
    (first,) = replicasets(cluster, "hello")
    restart = {
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-21T00:00:00Z"}
                }
            }
        }
    }
    await cluster.patch(DEPLOY, "default", "hello", restart, patch_type="strategic")
    await until(cluster, lambda: len(replicasets(cluster, "hello")) == 2)
    await ready_all(cluster, "hello")
    assert get(cluster, DEPLOY, "hello")["metadata"]["annotations"][REVISION] == "2"
    # Back to the first template: its ReplicaSet is reused as revision 3.
    d = get(cluster, DEPLOY, "hello")
    d["spec"]["template"] = first["spec"]["template"]
    d["spec"]["template"]["metadata"]["labels"].pop("pod-template-hash")
    await cluster.update(DEPLOY, d)
    await until(
        cluster,
        lambda: (
            get(cluster, RS, first["metadata"]["name"])["metadata"]["annotations"][REVISION] == "3"
        ),
    )
    await ready_all(cluster, "hello")
    assert len(replicasets(cluster, "hello")) == 2
    reused = get(cluster, RS, first["metadata"]["name"])
    assert reused["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert get(cluster, DEPLOY, "hello")["metadata"]["annotations"][REVISION] == "3"


async def test_recreate_never_overlaps(cluster: Cluster) -> None:
    await cluster.create(DEPLOY, deployment("hello", 2, strategy={"type": "Recreate"}))
    await ready_all(cluster, "hello")
    overlap: list[set[str]] = []

    def watch(event: str, resource: str, obj: dict[str, Any]) -> None:
        images = {p["spec"]["containers"][0]["image"] for p in pods(cluster, app="hello")}
        if len(images) > 1:
            overlap.append(images)

    cluster.subscribe(watch)
    await set_image(cluster, DEPLOY, "hello", "demo/hello:2")
    await until(cluster, lambda: len(replicasets(cluster, "hello")) == 2)
    await ready_all(cluster, "hello")
    cluster.unsubscribe(watch)
    assert not overlap
    assert {p["spec"]["containers"][0]["image"] for p in pods(cluster, app="hello")} == {
        "demo/hello:2"
    }


async def test_scaling_a_finished_deployment(cluster: Cluster) -> None:
    await cluster.create(DEPLOY, deployment("hello", 1))
    await ready_all(cluster, "hello")
    await cluster.patch(DEPLOY, "default", "hello", {"spec": {"replicas": 3}}, patch_type="merge")
    await until(cluster, lambda: len(pods(cluster, app="hello")) == 3)
    await ready_all(cluster, "hello")
    (rs,) = replicasets(cluster, "hello")
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "3"
    await cluster.patch(DEPLOY, "default", "hello", {"spec": {"replicas": 0}}, patch_type="merge")
    await until(cluster, lambda: not pods(cluster, app="hello"))
    await until(cluster, lambda: rolled_out(cluster, "hello"))


async def test_revision_history_limit_prunes_old_replicasets(cluster: Cluster) -> None:
    await cluster.create(DEPLOY, deployment("hello", 1, revisionHistoryLimit=1))
    for image in ("demo/hello:2", "demo/hello:3"):
        await ready_all(cluster, "hello")
        await set_image(cluster, DEPLOY, "hello", image)
    await ready_all(cluster, "hello")
    await until(
        cluster, lambda: len(replicasets(cluster, "hello")) == 2, what="one old ReplicaSet kept"
    )
    revisions = sorted(
        rs["metadata"]["annotations"][REVISION] for rs in replicasets(cluster, "hello")
    )
    assert revisions == ["2", "3"]


async def test_progress_deadline_exceeded(cluster: Cluster) -> None:
    await cluster.create(DEPLOY, deployment("hello", 1, progressDeadlineSeconds=1))
    d = await until(
        cluster,
        lambda: (
            condition(d := get(cluster, DEPLOY, "hello"), "Progressing").get("reason")
            == "ProgressDeadlineExceeded"
            and d
        ),
        timeout=8,
    )
    cond = condition(d, "Progressing")
    assert cond["status"] == "False"
    assert cond["message"].endswith("has timed out progressing.")
    assert condition(d, "Available")["status"] == "False"


async def test_paused_deployment_scales_but_does_not_roll_out(cluster: Cluster) -> None:
    await cluster.create(DEPLOY, deployment("hello", 1))
    await ready_all(cluster, "hello")
    await cluster.patch(
        DEPLOY,
        "default",
        "hello",
        {
            "spec": {
                "paused": True,
                "replicas": 2,
                "template": {"spec": {"containers": [{"name": "app", "image": "demo/hello:2"}]}},
            }
        },
        patch_type="strategic",
    )
    await until(cluster, lambda: len(pods(cluster, app="hello")) == 2)
    await until(cluster, lambda: get(cluster, DEPLOY, "hello")["status"]["observedGeneration"] == 2)
    assert len(replicasets(cluster, "hello")) == 1
    await cluster.patch(DEPLOY, "default", "hello", {"spec": {"paused": False}}, patch_type="merge")
    await until(cluster, lambda: len(replicasets(cluster, "hello")) == 2)
    await ready_all(cluster, "hello")
    images = {p["spec"]["containers"][0]["image"] for p in pods(cluster, app="hello")}
    assert images == {"demo/hello:2"}
