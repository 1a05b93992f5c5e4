"""Why agents are not arriving, read from the workload's pods and Events.

A pure function over API objects (dicts). Each finding says what is wrong and
what to do; ``definitive`` ones end a prepare at once instead of waiting for
the timeout (a pull that fails, a crash loop, a webhook that was not called).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from core.protocol import AGENT_CONFIG_ANNOTATION, AGENT_CONTAINER, INJECT_ANNOTATION

_PULL = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
_CONFIG = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})


@dataclass(frozen=True)
class Finding:
    code: str
    """``webhook-not-called``, ``image-pull``, ``crash-loop``, ``scheduling``, ``quota``,
    ``create-failed``, ``container-config``, ``opted-out``, ``not-connected``, ``rolling``."""
    message: str
    hint: str = ""
    definitive: bool = True


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _statuses(pod: dict[str, Any]) -> Iterable[dict[str, Any]]:
    status = pod.get("status") or {}
    yield from status.get("initContainerStatuses") or []
    yield from status.get("containerStatuses") or []


def diagnose(
    *,
    pods: list[dict[str, Any]],
    events: list[dict[str, Any]],
    owners: set[str],
    registered: set[str],
    manager_address: str,
    config: str | None = None,
) -> Finding | None:
    """The most telling reason, or None when nothing is wrong (yet).

    Pods without the agent-config annotation (or, when ``config`` is given,
    with another one) are old pods on their way out and are not judged.

    ``owners`` names the objects whose Events matter (the workload and its
    ReplicaSets); ``registered`` the pods whose agents reached the manager.
    """
    for event in events:
        involved = (event.get("involvedObject") or {}).get("name", "")
        if involved in owners and event.get("reason") == "FailedCreate":
            message = str(event.get("message", ""))
            if "quota" in message.lower():
                return Finding(
                    "quota",
                    f"pods of {involved} cannot be created: {message}",
                    "raise the namespace's ResourceQuota or lower the workload's requests; "
                    "the agent itself asks for 10m CPU and 32Mi memory",
                )
            return Finding("create-failed", f"pods of {involved} cannot be created: {message}")

    findings: list[Finding] = []
    for pod in pods:
        meta = _meta(pod)
        if meta.get("deletionTimestamp"):
            continue
        name = str(meta.get("name", ""))
        ann = meta.get("annotations") or {}
        if AGENT_CONFIG_ANNOTATION not in ann or config not in (None, ann[AGENT_CONFIG_ANNOTATION]):
            continue  # an old pod, still being replaced
        containers = (pod.get("spec") or {}).get("containers") or []
        if not any(c.get("name") == AGENT_CONTAINER for c in containers):
            if str(ann.get(INJECT_ANNOTATION, "")).lower() == "disabled":
                findings.append(
                    Finding(
                        "opted-out",
                        f"pod {name} opts out of injection ({INJECT_ANNOTATION}: disabled)",
                        f"remove the {INJECT_ANNOTATION} annotation from the pod template",
                    )
                )
                continue
            findings.append(
                Finding(
                    "webhook-not-called",
                    f"pod {name} was created from the prepared template but has no "
                    f"{AGENT_CONTAINER} container: the webhook was not called",
                    "check `kubectl get mutatingwebhookconfiguration waylay-agent-injector`, "
                    "that the namespace is not excluded by its namespaceSelector, and that "
                    "the manager runs (`kubectl -n waylay get pods`); `waylay install` repairs it",
                )
            )
            continue
        findings.extend(_pod_findings(pod, name, registered, manager_address))
    order = [
        "webhook-not-called",
        "opted-out",
        "image-pull",
        "crash-loop",
        "container-config",
        "scheduling",
        "not-connected",
    ]
    findings.sort(key=lambda f: order.index(f.code) if f.code in order else len(order))
    return findings[0] if findings else None


def _pod_findings(
    pod: dict[str, Any], name: str, registered: set[str], manager_address: str
) -> list[Finding]:
    out: list[Finding] = []
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            out.append(
                Finding(
                    "scheduling",
                    f"pod {name} cannot be scheduled: {cond.get('message') or cond.get('reason')}",
                    "free capacity or relax the workload's requests, affinity or tolerations",
                )
            )
    for cs in _statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        container = cs.get("name", "?")
        detail = waiting.get("message") or reason
        if reason in _PULL:
            out.append(
                Finding(
                    "image-pull",
                    f"pod {name}: image {cs.get('image', '?')} of container {container} "
                    f"cannot be pulled: {detail}",
                    "check the image name and tag and the registry's credentials "
                    "(imagePullSecrets); for the agent, `waylay install --agent-image`",
                )
            )
        elif reason == "CrashLoopBackOff":
            last = (cs.get("lastState") or {}).get("terminated") or {}
            why = last.get("message") or last.get("reason") or "no message"
            out.append(
                Finding(
                    "crash-loop",
                    f"pod {name}: container {container} keeps crashing "
                    f"(exit code {last.get('exitCode', '?')}: {why})",
                    f"read its log: `kubectl logs {name} -c {container} --previous`",
                )
            )
        elif reason in _CONFIG:
            out.append(Finding("container-config", f"pod {name}: {container}: {detail}"))
    if not out and name not in registered:
        agent = next(
            (
                cs
                for cs in status.get("containerStatuses") or []
                if cs.get("name") == AGENT_CONTAINER
            ),
            None,
        )
        if agent is not None and "running" in (agent.get("state") or {}):
            out.append(
                Finding(
                    "not-connected",
                    f"pod {name}: the agent runs but has not reached the manager at "
                    f"{manager_address}",
                    f"read its log: `kubectl logs {name} -c {AGENT_CONTAINER}`; a NetworkPolicy "
                    "may block traffic to the waylay namespace",
                    definitive=False,
                )
            )
    return out
