"""A pod's ``status`` computed from what its containers are doing.

Pure functions over ``ContainerStatus`` records, so the shape (which the
``kubernetes`` client's models validate: ``imageID``, ``ready``,
``restartCount`` … are required) is checked in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ContainerStatus", "pod_phase", "pod_status"]


@dataclass
class ContainerStatus:
    """What ``status.containerStatuses[i]`` says about one container."""

    name: str
    image: str
    image_id: str = ""
    container_id: str = ""
    state: dict[str, Any] = field(
        default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}}
    )
    last_state: dict[str, Any] = field(default_factory=dict)
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    done: bool = False
    """Terminated and not going to be restarted (restartPolicy says so)."""

    def to_json(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.started,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def exit_code(self) -> int | None:
        terminated = self.state.get("terminated")
        return int(terminated["exitCode"]) if terminated else None


def pod_phase(
    containers: list[ContainerStatus],
    init_done: bool,
    init_containers: list[ContainerStatus] | None = None,
) -> str:
    """Pending until every container has run; then Running, Succeeded or Failed.

    An init container that failed for good (``restartPolicy: Never``) fails the pod.
    """
    if any(c.done and c.exit_code != 0 for c in init_containers or []):
        return "Failed"
    if not init_done or not containers:
        return "Pending"
    if all(c.done for c in containers):
        return "Succeeded" if all(c.exit_code == 0 for c in containers) else "Failed"
    if any(c.running for c in containers) or all(
        c.restart_count > 0 or c.done or c.running for c in containers
    ):
        return "Running"
    return "Pending"


def _condition(
    kind: str, ok: bool, since: dict[str, str], now: str, reason: str = ""
) -> dict[str, Any]:
    value = "True" if ok else "False"
    previous = since.get(kind)
    if previous is None or not previous.startswith(value + "@"):
        since[kind] = f"{value}@{now}"
    condition: dict[str, Any] = {
        "type": kind,
        "status": value,
        "lastProbeTime": None,
        "lastTransitionTime": since[kind].split("@", 1)[1],
    }
    if not ok and reason:
        condition["reason"] = reason
    return condition


def pod_status(
    *,
    pod_ip: str,
    host_ip: str,
    start_time: str,
    containers: list[ContainerStatus],
    init_containers: list[ContainerStatus],
    init_done: bool,
    transitions: dict[str, str],
    now: str,
    qos_class: str = "BestEffort",
) -> dict[str, Any]:
    """The whole ``status`` of a pod; ``transitions`` remembers condition transition times."""
    phase = pod_phase(containers, init_done, init_containers)
    ready = init_done and bool(containers) and all(c.ready for c in containers)
    not_ready = [c.name for c in containers if not c.ready]
    ready_reason = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
    conditions = [
        _condition("PodReadyToStartContainers", True, transitions, now),
        _condition("Initialized", init_done, transitions, now, "ContainersNotInitialized"),
        _condition("Ready", ready, transitions, now, ready_reason),
        _condition("ContainersReady", ready, transitions, now, ready_reason),
        _condition("PodScheduled", True, transitions, now),
    ]
    if not ready and not_ready and phase not in ("Succeeded", "Failed"):
        message = f"containers with unready status: [{' '.join(not_ready)}]"
        conditions[2]["message"] = message
        conditions[3]["message"] = message
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": start_time,
        "containerStatuses": [c.to_json() for c in containers],
        "qosClass": qos_class,
    }
    if init_containers:
        status["initContainerStatuses"] = [c.to_json() for c in init_containers]
    return status
