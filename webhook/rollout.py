"""Prepare: make a workload's agents arrive, with the manager's own service account.

1. Resolve the workload, the Service and its port; refuse ReplicaSets that a
   Deployment owns (intercept the Deployment).
2. Merge the port into the agent config and write it as the pod template's
   annotation (``AGENT_CONFIG_ANNOTATION``). Deployments and StatefulSets with
   rolling updates roll by themselves; bare ReplicaSets (and ``OnDelete``
   StatefulSets) have their old pods replaced one at a time.
3. Wait until every replica's agent has registered with the port, streaming
   progress; when they don't come, say why (``webhook.diagnose``) instead of
   timing out bare.
4. For a numeric ``targetPort``, point the Service at the agent's named port,
   recording the old value in the ``waylay.dev/target-port-undo`` annotation.

Every step is idempotent: after a manager restart the client asks again and
the rollout continues where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from core.protocol import (
    AGENT_CONFIG_ANNOTATION,
    AGENT_CONTAINER,
    TARGET_PORT_UNDO_ANNOTATION,
    AgentConfig,
    InterceptSpec,
    Problem,
    TakeoverPort,
)
from webhook.client_api import Progress
from webhook.diagnose import Finding, diagnose
from webhook.inject import agent_port_name
from webhook.kube import AsyncKube
from webhook.registry import Registry, RegistryError, workload_of

UNDO_ANNOTATION = TARGET_PORT_UNDO_ANNOTATION
FIRST_AGENT_PORT = 9900
DIAGNOSE_EVERY = 2.0
"""Seconds between looks at pods' statuses and Events while waiting."""
TUNNEL_PORT = 7777

_TITLES = {
    "webhook-not-called": "The webhook was not called",
    "opted-out": "The workload opts out of injection",
    "image-pull": "An image cannot be pulled",
    "crash-loop": "A container keeps crashing",
    "container-config": "A container cannot be configured",
    "scheduling": "Pods cannot be scheduled",
    "quota": "A ResourceQuota blocks the new pods",
    "create-failed": "Pods cannot be created",
    "not-connected": "Agents cannot reach the manager",
}


def _fail(code: str, title: str, message: str, hint: str = "") -> RegistryError:
    return RegistryError(Problem(code=code, title=title, message=message, hint=hint))


def not_arriving(finding: Finding) -> RegistryError:
    return _fail(
        "agent-not-arriving",
        _TITLES.get(finding.code, "Agents are not arriving"),
        finding.message,
        finding.hint,
    )


def selector_string(workload: dict[str, Any]) -> str:
    labels = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def find_service_port(service: dict[str, Any], spec: InterceptSpec) -> dict[str, Any]:
    ports = (service.get("spec") or {}).get("ports") or []
    for p in ports:
        if p.get("port") == spec.service_port and p.get("protocol", "TCP") == spec.protocol:
            return dict(p)
    raise _fail(
        "not-found",
        "No such service port",
        f"service {spec.service} has no port {spec.service_port}/{spec.protocol}",
        "ports: " + ", ".join(f"{p.get('name') or '-'}={p.get('port')}" for p in ports),
    )


def takeover_for(
    template: dict[str, Any],
    spec: InterceptSpec,
    port: dict[str, Any],
    existing: AgentConfig | None,
) -> TakeoverPort:
    """The takeover for this Service port (the existing one when already prepared)."""
    for tp in existing.ports if existing else []:
        if (tp.service, tp.service_port, tp.protocol) == (
            spec.service,
            spec.service_port,
            spec.protocol,
        ):
            return tp
    containers = (template.get("spec") or {}).get("containers") or []
    if not containers:
        raise _fail("bad-workload", "No containers", f"{spec.workload} has no containers")
    target = port.get("targetPort", port.get("port"))
    app, app_port, name = containers[0], None, ""
    if isinstance(target, str) and not target.isdigit():
        name = target
        for c in containers:
            for cp in c.get("ports") or []:
                if cp.get("name") == target:
                    app, app_port = c, int(cp["containerPort"])
        if app_port is None:
            raise _fail(
                "bad-workload",
                "Named target port not found",
                f"service {spec.service} targets port {target!r}, "
                f"which no container of {spec.workload} declares",
            )
    elif target is None:
        raise _fail("bad-workload", "Service port without a port", f"{spec.service}: {port}")
    else:
        app_port = int(target)
        for c in containers:
            if any(cp.get("containerPort") == app_port for cp in c.get("ports") or []):
                app = c
                break
    used = {TUNNEL_PORT} | {
        int(cp.get("containerPort", 0)) for c in containers for cp in c.get("ports") or []
    }
    used |= {tp.agent_port for tp in (existing.ports if existing else [])}
    agent_port = FIRST_AGENT_PORT
    while agent_port in used:
        agent_port += 1
    return TakeoverPort(
        service=spec.service,
        service_port=spec.service_port,
        service_port_name=str(port.get("name") or ""),
        protocol=spec.protocol,
        target_port_name=name,
        app_container=str(app.get("name")),
        app_port=app_port,
        agent_port=agent_port,
    )


@dataclass
class Rollout:
    kube: AsyncKube
    registry: Registry
    manager_address: str
    timeout: float = 150.0
    poll: float = 0.5

    def __post_init__(self) -> None:
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    async def prepare(self, spec: InterceptSpec, progress: Progress) -> dict[str, Any]:
        """One prepare per workload at a time: each merges its port into the last one's."""
        lock = self._locks.setdefault(workload_of(spec), asyncio.Lock())
        if lock.locked():
            await progress({"step": "queued", "message": "another prepare of this workload runs"})
        async with lock:
            return await self._prepare(spec, progress)

    async def _prepare(self, spec: InterceptSpec, progress: Progress) -> dict[str, Any]:
        kind, ns = spec.workload_kind, spec.namespace
        workload = await self.kube.get("apps/v1", kind, spec.workload, ns)
        if workload is None:
            raise _fail("not-found", "No such workload", f"{kind} {ns}/{spec.workload} not found")
        owner = _controller(workload)
        if kind == "ReplicaSet" and owner and owner.get("kind") == "Deployment":
            raise _fail(
                "bad-workload",
                "ReplicaSet belongs to a Deployment",
                f"ReplicaSet {spec.workload} is managed by Deployment {owner.get('name')}",
                f"intercept the Deployment: `--workload {owner.get('name')}`",
            )
        service = await self.kube.get("v1", "Service", spec.service, ns)
        if service is None:
            raise _fail("not-found", "No such service", f"service {ns}/{spec.service} not found")
        port = find_service_port(service, spec)
        template = (workload.get("spec") or {}).get("template") or {}
        current = ((template.get("metadata") or {}).get("annotations") or {}).get(
            AGENT_CONFIG_ANNOTATION
        )
        existing = _parse_config(current)
        tp = takeover_for(template, spec, port, existing)
        config = AgentConfig(
            workload_kind=kind,
            workload_name=spec.workload,
            namespace=ns,
            manager_address=self.manager_address,
            ports=[*(existing.ports if existing else []), *([] if _has(existing, tp) else [tp])],
        )
        wanted = config.model_dump_json()
        if current != wanted:
            patch = {
                "spec": {
                    "template": {"metadata": {"annotations": {AGENT_CONFIG_ANNOTATION: wanted}}}
                }
            }
            workload = await self.kube.patch("apps/v1", kind, spec.workload, patch, ns)
            await progress(
                {"step": "annotated", "message": f"agent config written to {kind} {spec.workload}"}
            )
        replace_pods = kind == "ReplicaSet" or (
            kind == "StatefulSet"
            and ((workload.get("spec") or {}).get("updateStrategy") or {}).get("type") == "OnDelete"
        )
        await self._wait(spec, workload, tp, wanted, progress, replace_pods=replace_pods)
        if not tp.target_port_name:
            await self._repoint(spec, tp, progress)
        agents = self.registry.agents_of(workload_of(spec))
        return {
            "workload": {"kind": kind, "name": spec.workload, "namespace": ns},
            "port": tp.model_dump(),
            "agents": [self.registry.agent_info(a) for a in agents if _has_port(a.hello.ports, tp)],
        }

    async def _wait(
        self,
        spec: InterceptSpec,
        workload: dict[str, Any],
        tp: TakeoverPort,
        wanted_config: str,
        progress: Progress,
        *,
        replace_pods: bool,
    ) -> None:
        """Until every replica's agent is registered with ``tp``; diagnose when stuck."""
        ns = spec.namespace
        replicas = int((workload.get("spec") or {}).get("replicas", 1))
        if replicas == 0:
            raise _fail(
                "bad-workload",
                "Workload scaled to zero",
                f"{spec.workload_kind} {spec.workload} has 0 replicas: no pod can carry an agent",
                f"scale it up: `kubectl -n {ns} scale {spec.workload_kind.lower()} "
                f"{spec.workload} --replicas=1`",
            )
        changed = asyncio.Event()
        unsubscribe = self.registry.subscribe(
            lambda c: (
                changed.set() if c.kind == "agent" and c.workload == workload_of(spec) else None
            )
        )
        deadline = time.monotonic() + self.timeout
        last_ready = -1
        next_diagnosis = 0.0
        finding: Finding | None = None
        stale_names: set[str] | None = None
        selector = selector_string(workload)
        try:
            while True:
                ready_pods = {
                    a.hello.pod
                    for a in self.registry.agents_of(workload_of(spec))
                    if _has_port(a.hello.ports, tp)
                }
                pods = await self.kube.list("v1", "Pod", ns, label_selector=selector)
                live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
                if stale_names is None:
                    # Prepared pods without an agent that exist already were made while
                    # the webhook was away (a manager restart): replace them once.
                    stale_names = {
                        _name(p)
                        for p in live
                        if _pod_config(p) == wanted_config and not _has_agent(p)
                    }
                stale = [p for p in live if _name(p) in stale_names]
                old = stale + [p for p in live if _pod_config(p) != wanted_config]
                judged = [p for p in live if _name(p) not in stale_names]
                ready = len(
                    ready_pods & {_name(p) for p in live if _pod_config(p) == wanted_config}
                )
                if ready != last_ready:
                    last_ready = ready
                    await progress(
                        {
                            "step": "waiting",
                            "message": f"{ready}/{replicas} agents registered",
                            "ready": ready,
                            "wanted": replicas,
                        }
                    )
                if ready >= replicas and not old:
                    await progress({"step": "ready", "message": f"{ready}/{replicas} agents ready"})
                    return
                if time.monotonic() >= next_diagnosis:
                    next_diagnosis = time.monotonic() + DIAGNOSE_EVERY
                    finding = await self._diagnose(
                        spec, workload, judged, ready_pods, wanted_config
                    )
                    if finding is not None and finding.definitive:
                        raise not_arriving(finding)
                settled = len(live) >= replicas and _replacements_settled(
                    judged, wanted_config, ready_pods
                )
                if (stale or (replace_pods and old)) and settled:
                    victim = _name(old[0])
                    await progress({"step": "replacing", "message": f"replacing pod {victim}"})
                    await self.kube.delete("v1", "Pod", victim, ns)
                if time.monotonic() > deadline:
                    if finding is not None:
                        raise not_arriving(finding)
                    raise _fail(
                        "agent-not-arriving",
                        "Agents are not arriving",
                        f"after {self.timeout:g}s {ready}/{replicas} agents of "
                        f"{spec.workload_kind} {spec.workload} registered; {len(old)} pods still "
                        "run the old template and no pod reports an error",
                        f"watch the rollout: `kubectl -n {ns} rollout status "
                        f"{spec.workload_kind.lower()}/{spec.workload}`; a paused rollout or "
                        "a PodDisruptionBudget can hold it",
                    )
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), self.poll)
        finally:
            unsubscribe()

    async def _diagnose(
        self,
        spec: InterceptSpec,
        workload: dict[str, Any],
        pods: list[dict[str, Any]],
        registered: set[str],
        config: str,
    ) -> Finding | None:
        ns = spec.namespace
        owners = {spec.workload}
        uid = (workload.get("metadata") or {}).get("uid")
        if spec.workload_kind == "Deployment":
            for rs in await self.kube.list("apps/v1", "ReplicaSet", ns):
                if any(
                    o.get("uid") == uid
                    for o in (rs.get("metadata") or {}).get("ownerReferences") or []
                ):
                    owners.add(_name(rs))
        events = await self.kube.list("v1", "Event", ns)
        recent = [e for e in events if (e.get("involvedObject") or {}).get("name") in owners]
        return diagnose(
            pods=pods,
            events=recent[-20:],
            owners=owners,
            registered=registered,
            manager_address=self.manager_address,
            config=config,
        )

    async def _repoint(self, spec: InterceptSpec, tp: TakeoverPort, progress: Progress) -> None:
        service = await self.kube.get("v1", "Service", spec.service, spec.namespace)
        if service is None:
            return
        meta = service.get("metadata") or {}
        undo: dict[str, Any] = json.loads(
            (meta.get("annotations") or {}).get(UNDO_ANNOTATION) or "{}"
        )
        ports = [dict(p) for p in (service.get("spec") or {}).get("ports") or []]
        name = agent_port_name(tp)
        changed = False
        for p in ports:
            if p.get("port") == tp.service_port and p.get("protocol", "TCP") == tp.protocol:
                if p.get("targetPort") == name:
                    continue
                undo.setdefault(
                    f"{tp.service_port}/{tp.protocol}", p.get("targetPort", p.get("port"))
                )
                p["targetPort"] = name
                changed = True
        if not changed:
            return
        patch = {
            "metadata": {
                "annotations": {UNDO_ANNOTATION: json.dumps(undo, sort_keys=True)},
                "resourceVersion": meta.get("resourceVersion"),
            },
            "spec": {"ports": ports},
        }
        await self.kube.patch("v1", "Service", spec.service, patch, spec.namespace)
        await progress(
            {"step": "service", "message": f"service {spec.service} now targets port {name!r}"}
        )


def _controller(obj: dict[str, Any]) -> dict[str, Any] | None:
    for o in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if o.get("controller"):
            return dict(o)
    return None


def _parse_config(raw: str | None) -> AgentConfig | None:
    if not raw:
        return None
    try:
        return AgentConfig.model_validate_json(raw)
    except ValueError:
        return None


def _has(config: AgentConfig | None, tp: TakeoverPort) -> bool:
    return config is not None and _has_port(config.ports, tp)


def _has_port(ports: list[TakeoverPort], tp: TakeoverPort) -> bool:
    key = (tp.service, tp.service_port, tp.protocol)
    return any((p.service, p.service_port, p.protocol) == key for p in ports)


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _pod_config(pod: dict[str, Any]) -> str | None:
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    value = ann.get(AGENT_CONFIG_ANNOTATION)
    return str(value) if value is not None else None


def _has_agent(pod: dict[str, Any]) -> bool:
    containers = (pod.get("spec") or {}).get("containers") or []
    return any(c.get("name") == AGENT_CONTAINER for c in containers)


def _replacements_settled(live: list[dict[str, Any]], wanted: str, registered: set[str]) -> bool:
    """One at a time: every pod already replaced has its agent registered."""
    return all(_name(p) in registered for p in live if _pod_config(p) == wanted)
