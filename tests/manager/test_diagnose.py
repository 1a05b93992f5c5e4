"""Why agents don't arrive (``webhook.diagnose``), from pods and Events.

Covers: quota and other FailedCreate Events; a pod from the prepared template
without an agent means the webhook was not called (or it opts out); image pull
failures, crash loops (with the exit code) and unschedulable pods are named;
an agent that runs but never registered is reported without ending the wait;
old pods still rolling and healthy registered pods are no finding; the most
telling finding wins.
"""

from __future__ import annotations

from typing import Any

from core.protocol import AGENT_CONFIG_ANNOTATION, AGENT_CONTAINER, INJECT_ANNOTATION
from webhook.diagnose import diagnose


def pod(
    name: str,
    *,
    prepared: bool = True,
    agent: bool = True,
    statuses: list[dict[str, Any]] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    ann = dict(annotations or {})
    if prepared:
        ann[AGENT_CONFIG_ANNOTATION] = "{}"
    containers = [{"name": "app"}] + ([{"name": AGENT_CONTAINER}] if agent else [])
    return {
        "metadata": {"name": name, "annotations": ann},
        "spec": {"containers": containers},
        "status": {"containerStatuses": statuses or [], "conditions": conditions or []},
    }


def run(pods: list[dict[str, Any]], events: list[dict[str, Any]] | None = None, **kw: Any) -> Any:
    return diagnose(
        pods=pods,
        events=events or [],
        owners={"web", "web-abc"},
        registered=kw.get("registered", set()),
        manager_address="10.0.0.1:8081",
    )


def waiting(container: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "name": container,
        "image": "example.com/app:1",
        "state": {"waiting": {"reason": reason, "message": message}},
    }


def test_quota_event_is_named() -> None:
    event = {
        "involvedObject": {"kind": "ReplicaSet", "name": "web-abc"},
        "reason": "FailedCreate",
        "message": 'pods "web-abc-x" is forbidden: exceeded quota: small, requested: cpu=10m',
    }
    finding = run([], [event])
    assert finding.code == "quota" and "exceeded quota" in finding.message
    other = {**event, "involvedObject": {"name": "someone-else"}}
    assert run([], [other]) is None


def test_prepared_pod_without_agent_means_the_webhook_was_not_called() -> None:
    finding = run([pod("web-1", agent=False)])
    assert finding.code == "webhook-not-called" and finding.definitive
    assert "web-1" in finding.message and "mutatingwebhookconfiguration" in finding.hint
    opted = run([pod("web-1", agent=False, annotations={INJECT_ANNOTATION: "disabled"})])
    assert opted.code == "opted-out"


def test_image_pull_crash_loop_and_scheduling() -> None:
    pulled = run(
        [pod("web-1", statuses=[waiting(AGENT_CONTAINER, "ImagePullBackOff", "not found")])]
    )
    assert pulled.code == "image-pull" and "example.com/app:1" in pulled.message
    crash = waiting("app", "CrashLoopBackOff")
    crash["lastState"] = {"terminated": {"exitCode": 3, "reason": "Error", "message": "boom"}}
    looping = run([pod("web-1", statuses=[crash])])
    assert looping.code == "crash-loop" and "exit code 3: boom" in looping.message
    assert "--previous" in looping.hint
    pending = run(
        [
            pod(
                "web-1",
                conditions=[{"type": "PodScheduled", "status": "False", "message": "0/1 nodes"}],
            )
        ]
    )
    assert pending.code == "scheduling" and "0/1 nodes" in pending.message


def test_running_agent_that_never_registered_is_not_definitive() -> None:
    running = {"name": AGENT_CONTAINER, "state": {"running": {}}}
    finding = run([pod("web-1", statuses=[running])])
    assert finding.code == "not-connected" and not finding.definitive
    assert "10.0.0.1:8081" in finding.message
    assert run([pod("web-1", statuses=[running])], registered={"web-1"}) is None


def test_old_pods_are_not_findings_and_the_worst_wins() -> None:
    assert run([pod("old", prepared=False, agent=False)]) is None
    older_config = pod("older", agent=False)  # annotated "{}", but "{...}" is wanted now
    found = diagnose(
        pods=[older_config],
        events=[],
        owners=set(),
        registered=set(),
        manager_address="m",
        config='{"ports": []}',
    )
    assert found is None
    pods = [
        pod("a", statuses=[waiting("app", "ImagePullBackOff")]),
        pod("b", agent=False),
    ]
    assert run(pods).code == "webhook-not-called"
