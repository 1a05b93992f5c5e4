"""The StatefulSet controller: pods with stable ordinal names, made in order.

Pods are named ``<set>-0 .. <set>-(N-1)``, carry ``hostname`` = their name and
``subdomain`` = ``spec.serviceName``, and the labels the real controller sets
(``controller-revision-hash``, ``statefulset.kubernetes.io/pod-name``,
``apps.kubernetes.io/pod-index``). With ``OrderedReady`` (the default) pod N
is created only when pods 0..N-1 are Running and Ready, and scale-down removes
the highest ordinal first, one at a time; ``Parallel`` creates and deletes
without waiting. A template change is rolled out (RollingUpdate) by deleting
pods whose revision differs, highest ordinal first, each time waiting for the
replacement to be Running and Ready; ``OnDelete`` leaves that to the user.

The revision is ``<set>-<hash of the template>``, reported as
``status.updateRevision``; ``status.currentRevision`` moves to it once every
pod runs it and is Ready. ``rollingUpdate.partition`` holds pods below that
ordinal at the current revision: a replaced one is made from the current
revision's template, which the controller remembers in memory (it has no
ControllerRevision objects; after a restart it falls back to the new
template). volumeClaimTemplates are not modelled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sandbox.errors import ApiError

from ._base import ClusterLike, Controller, Key, Record
from ._hash import compute_hash
from ._meta import (
    Obj,
    controller_ref,
    is_available,
    is_ready,
    is_terminating,
    key_of,
    labels_of,
    matches_selector,
    until_available,
)
from ._owned import claim, owner_keys
from ._podtemplate import pod_from_template

__all__ = ["StatefulSetController", "ordinal_of", "run_statefulset"]

RESOURCE = "statefulsets.apps"
REVISION_LABEL = "controller-revision-hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")


def ordinal_of(set_name: str, pod_name: str) -> int | None:
    """The ordinal of ``<set>-<n>``, or None when the pod is not named for this set."""
    m = _ORDINAL.match(pod_name)
    if m is None or m.group(1) != set_name:
        return None
    return int(m.group(2))


def update_revision(sts: Mapping[str, Any]) -> str:
    """``<set>-<hash>`` of the current template (the ControllerRevision name)."""
    count = int((sts.get("status") or {}).get("collisionCount") or 0)
    template = (sts.get("spec") or {}).get("template") or {}
    return f"{sts['metadata']['name']}-{compute_hash(template, count)}"


def _running_and_ready(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_ready(pod)


def _revision(pod: Mapping[str, Any]) -> str:
    return labels_of(pod).get(REVISION_LABEL, "")


class StatefulSetController(Controller):
    name = "statefulset"
    component = "statefulset-controller"
    primary = RESOURCE

    def __init__(self, cluster: ClusterLike) -> None:
        super().__init__(cluster)
        self._templates: dict[str, Obj] = {}
        """Pod templates by revision name (what ControllerRevisions would hold)."""

    def keys_for(self, event: str, resource: str, obj: Obj) -> Iterable[Key]:
        if resource == RESOURCE:
            return [key_of(obj)]
        if resource != "pods":
            return []
        _, pod_name = key_of(obj)
        return owner_keys(
            self.store,
            event,
            obj,
            owner_resource=RESOURCE,
            owner_kind="StatefulSet",
            may_own=lambda s: ordinal_of(s["metadata"]["name"], pod_name) is not None,
        )

    async def reconcile(self, key: Key) -> float | None:
        ns, name = key
        sts = self.store.get(RESOURCE, ns, name)
        if sts is None:
            return None
        selector = (sts.get("spec") or {}).get("selector")
        await claim(
            self.cluster,
            "pods",
            sts,
            self.store.list("pods", ns),
            lambda p: (
                ordinal_of(name, p["metadata"]["name"]) is not None
                and matches_selector(selector, labels_of(p))
            ),
        )
        revision = update_revision(sts)
        self._templates[revision] = (sts.get("spec") or {}).get("template") or {}
        current = (sts.get("status") or {}).get("currentRevision") or revision
        if not is_terminating(sts):
            current_template = self._templates.get(current)
            olds = (current, current_template) if current_template is not None else None
            await _Pass(self.cluster, sts, self._pods(sts), revision, olds, self.event).run()
        return await self._write_status(sts, revision)

    def _pods(self, sts: Obj) -> dict[int, Obj]:
        """The pods this set controls, by ordinal."""
        uid = sts["metadata"]["uid"]
        pods: dict[int, Obj] = {}
        for pod in self.store.list("pods", sts["metadata"]["namespace"]):
            ref = controller_ref(pod)
            ordinal = ordinal_of(sts["metadata"]["name"], pod["metadata"]["name"])
            if ref and ref.get("uid") == uid and ordinal is not None:
                pods[ordinal] = pod
        return pods

    async def _write_status(self, sts: Obj, revision: str) -> float | None:
        ns, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
        fresh = self.store.get(RESOURCE, ns, name)
        if fresh is None:
            return None
        pods = list(self._pods(fresh).values())
        spec = fresh.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = datetime.now(UTC)
        old: dict[str, Any] = fresh.get("status") or {}
        current = old.get("currentRevision") or revision
        status: dict[str, Any] = {
            "observedGeneration": fresh["metadata"].get("generation", 1),
            "replicas": len(pods),
            "readyReplicas": sum(1 for p in pods if _running_and_ready(p)),
            "availableReplicas": sum(
                1 for p in pods if _running_and_ready(p) and is_available(p, min_ready, now)
            ),
            "currentReplicas": sum(1 for p in pods if _revision(p) == current),
            "updatedReplicas": sum(1 for p in pods if _revision(p) == revision),
            "currentRevision": current,
            "updateRevision": revision,
            "collisionCount": int(old.get("collisionCount") or 0),
        }
        rolling = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
        if (
            rolling
            and status["updatedReplicas"] == status["replicas"]
            and status["readyReplicas"] == status["replicas"]
        ):
            status["currentRevision"] = revision
            status["currentReplicas"] = status["updatedReplicas"]
        if old.get("conditions"):
            status["conditions"] = old["conditions"]
        if status != old:
            fresh["status"] = status
            await self.cluster.update(RESOURCE, fresh, subresource="status")
        waits = [w for p in pods if (w := until_available(p, min_ready, now)) is not None]
        return min(waits) + 0.05 if waits else None


class _Pass:
    """One pass of ``updateStatefulSet``: create, delete and replace pods."""

    def __init__(
        self,
        cluster: ClusterLike,
        sts: Obj,
        pods: dict[int, Obj],
        revision: str,
        current: tuple[str, Obj] | None,
        record: Record,
    ) -> None:
        self.cluster = cluster
        self.record = record
        self.sts = sts
        self.pods = pods
        self.revision = revision
        self.current = current
        """(revision, template) pods below the partition are made from, if known."""
        spec = sts.get("spec") or {}
        strategy = spec.get("updateStrategy") or {}
        self.rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        self.partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        self.replicas = int(spec.get("replicas", 1))
        self.monotonic = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        self.min_ready = int(spec.get("minReadySeconds") or 0)
        self.now = datetime.now(UTC)

    def _healthy(self, pod: Obj) -> bool:
        return (
            _running_and_ready(pod)
            and not is_terminating(pod)
            and is_available(pod, self.min_ready, self.now)
        )

    async def run(self) -> None:
        if not await self._replicas() or not await self._condemned():
            return
        await self._rolling_update()

    async def _replicas(self) -> bool:
        """Create and replace pods 0..N-1; False when an ordered set must wait."""
        for ordinal in range(self.replicas):
            pod = self.pods.get(ordinal)
            if pod is None:
                await self._create(ordinal)
                if self.monotonic:
                    return False
                continue
            if (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
                await self._delete(pod)  # recreated on the next pass
                if self.monotonic:
                    return False
                continue
            if not self._healthy(pod) and self.monotonic:
                return False
        return True

    async def _condemned(self) -> bool:
        """Delete pods with ordinals >= N, highest first; False when an ordered set must wait."""
        condemned = sorted((o for o in self.pods if o >= self.replicas), reverse=True)
        unhealthy = [o for o in sorted(self.pods) if not self._healthy(self.pods[o])]
        first_unhealthy = unhealthy[0] if unhealthy else None
        for ordinal in condemned:
            pod = self.pods[ordinal]
            if is_terminating(pod):
                if self.monotonic:
                    return False
                continue
            if not _running_and_ready(pod) and self.monotonic and ordinal != first_unhealthy:
                return False
            await self._delete(pod)
            if self.monotonic:
                return False
        return True

    async def _rolling_update(self) -> None:
        """Replace pods of another revision, highest ordinal first, one at a time."""
        if not self.rolling:
            return
        for ordinal in range(self.replicas - 1, min(self.partition, self.replicas) - 1, -1):
            pod = self.pods.get(ordinal)
            if pod is None:
                return
            if _revision(pod) != self.revision and not is_terminating(pod):
                await self._delete(pod)
                return
            if not self._healthy(pod):
                return

    async def _create(self, ordinal: int) -> None:
        name = f"{self.sts['metadata']['name']}-{ordinal}"
        revision, template = self.revision, (self.sts.get("spec") or {}).get("template") or {}
        if self.rolling and ordinal < self.partition and self.current is not None:
            revision, template = self.current
        pod = pod_from_template(
            template,
            self.sts,
            name=name,
            extra_labels={
                REVISION_LABEL: revision,
                POD_NAME_LABEL: name,
                POD_INDEX_LABEL: str(ordinal),
            },
        )
        pod["spec"]["hostname"] = name
        service = (self.sts.get("spec") or {}).get("serviceName")
        if service:
            pod["spec"]["subdomain"] = service
        await self.cluster.create("pods", pod, namespace=self.sts["metadata"]["namespace"])
        self._record("SuccessfulCreate", f"create Pod {name}")

    async def _delete(self, pod: Obj) -> None:
        try:
            await self.cluster.delete("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
        except ApiError as exc:
            if exc.code != 404:
                raise
        else:
            self._record("SuccessfulDelete", f"delete Pod {pod['metadata']['name']}")

    def _record(self, reason: str, what: str) -> None:
        set_name = self.sts["metadata"]["name"]
        self.record(self.sts, reason, f"{what} in StatefulSet {set_name} successful")


async def run_statefulset(cluster: ClusterLike) -> None:
    """Run the StatefulSet controller until cancelled."""
    await StatefulSetController(cluster).run()
