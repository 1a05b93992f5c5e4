"""The ReplicaSet controller: keep ``spec.replicas`` pods alive.

Per ReplicaSet it claims pods (adopting matching orphans, releasing pods that
stopped matching), creates missing pods named ``<rs>-<random>`` in batches of
1, 2, 4, ... (stopping at the first failure, like ``slowStartBatch``), deletes
surplus pods not-ready-first, and writes ``status``: replicas,
fullyLabeledReplicas, readyReplicas, availableReplicas (Ready for
``minReadySeconds``), observedGeneration and a ReplicaFailure condition while
pods cannot be created or deleted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sandbox.errors import ApiError

from ._base import ClusterLike, Controller, Key, RetryLater
from ._meta import (
    Obj,
    is_active,
    is_available,
    is_ready,
    key_of,
    labels_of,
    matches_selector,
    now_rfc3339,
    until_available,
)
from ._owned import claim, owner_keys
from ._podtemplate import deletion_order, pod_from_template

__all__ = ["ReplicaSetController", "run_replicaset"]

RESOURCE = "replicasets.apps"
log = logging.getLogger("sandbox.controllers.replicaset")


class ReplicaSetController(Controller):
    name = "replicaset"
    component = "replicaset-controller"
    primary = RESOURCE

    def keys_for(self, event: str, resource: str, obj: Obj) -> Iterable[Key]:
        if resource == RESOURCE:
            return [key_of(obj)]
        if resource != "pods":
            return []
        return owner_keys(self.store, event, obj, owner_resource=RESOURCE, owner_kind="ReplicaSet")

    async def reconcile(self, key: Key) -> float | None:
        ns, name = key
        current = self.store.get(RESOURCE, ns, name)
        if current is None:
            return None  # its pods go with it through garbage collection
        rs = current  # the store hands out copies
        spec = rs.get("spec") or {}
        selector = spec.get("selector")
        pods = [p for p in self.store.list("pods", ns) if is_active(p)]
        pods = await claim(
            self.cluster, "pods", rs, pods, lambda p: matches_selector(selector, labels_of(p))
        )
        failure: str | None = None
        if not (rs["metadata"].get("deletionTimestamp")):
            failure = await self._manage(rs, pods)
        return await self._write_status(rs, pods, failure)

    async def _manage(self, rs: Obj, pods: list[Obj]) -> str | None:
        """Create or delete pods; returns a failure message (the ReplicaFailure condition)."""
        diff = len(pods) - int(rs["spec"].get("replicas", 1))
        if diff < 0:
            return await self._create(rs, -diff)
        if diff > 0:
            for pod in deletion_order(pods)[:diff]:
                try:
                    await self.cluster.delete("pods", pod["metadata"]["namespace"], _name(pod))
                except ApiError as exc:
                    if exc.code != 404:
                        self.event(
                            rs, "FailedDelete", f"Error deleting: {exc.message}", warning=True
                        )
                        return f"FailedDelete:{exc.message}"
                else:
                    self.event(rs, "SuccessfulDelete", f"Deleted pod: {_name(pod)}")
        return None

    async def _create(self, rs: Obj, count: int) -> str | None:
        template = rs["spec"].get("template") or {}
        prefix = f"{rs['metadata']['name']}-"
        batch = 1
        while count > 0:
            size = min(batch, count)
            results = await asyncio.gather(
                *(
                    self.cluster.create(
                        "pods",
                        pod_from_template(template, rs, generate_name=prefix),
                        namespace=rs["metadata"]["namespace"],
                    )
                    for _ in range(size)
                ),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, dict):
                    self.event(rs, "SuccessfulCreate", f"Created pod: {_name(result)}")
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                err = errors[0]
                log.warning("replicaset %s: creating pods failed: %r", rs["metadata"]["name"], err)
                message = err.message if isinstance(err, ApiError) else str(err)
                self.event(rs, "FailedCreate", f"Error creating: {message}", warning=True)
                return f"FailedCreate:{message}"
            count -= size
            batch *= 2
        return None

    async def _write_status(self, rs: Obj, pods: list[Obj], failure: str | None) -> float | None:
        spec = rs.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        now = datetime.now(UTC)
        old: dict[str, Any] = rs.get("status") or {}
        status: dict[str, Any] = {
            "replicas": len(pods),
            "fullyLabeledReplicas": sum(
                1 for p in pods if all(labels_of(p).get(k) == v for k, v in template_labels.items())
            ),
            "readyReplicas": sum(1 for p in pods if is_ready(p)),
            "availableReplicas": sum(1 for p in pods if is_available(p, min_ready, now)),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        conditions = [c for c in old.get("conditions") or [] if c.get("type") != "ReplicaFailure"]
        if failure is not None:
            reason, _, message = failure.partition(":")
            previous = next(
                (c for c in old.get("conditions") or [] if c.get("type") == "ReplicaFailure"), None
            )
            conditions.append(
                previous
                or {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": now_rfc3339(),
                }
            )
        if conditions:
            status["conditions"] = conditions
        if status != old:
            rs["status"] = status
            await self.cluster.update(RESOURCE, rs, subresource="status")
        waits = [w for p in pods if (w := until_available(p, min_ready, now)) is not None]
        if waits:
            return min(waits) + 0.05
        if failure is not None:
            raise RetryLater(f"replicaset {rs['metadata']['name']}: {failure}")
        return None


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


async def run_replicaset(cluster: ClusterLike) -> None:
    """Run the ReplicaSet controller until cancelled."""
    await ReplicaSetController(cluster).run()
