"""The Deployment controller: roll a pod template out through ReplicaSets.

For each Deployment it claims ReplicaSets (adopting matching orphans), finds
the one whose template equals the Deployment's (ignoring
``pod-template-hash``) or creates ``<deployment>-<hash>``, keeps the
``deployment.kubernetes.io/revision`` annotations on both in step, then moves
replicas from old to new:

- RollingUpdate: grow the new ReplicaSet while the total stays within
  ``replicas + maxSurge``, shrink old ones while ``replicas - maxUnavailable``
  stay available (both may be percentages);
- Recreate: scale every old ReplicaSet to zero, wait until their pods are
  gone, then scale the new one up.

A paused Deployment only follows scale changes. Not modelled: proportional
scaling of several active ReplicaSets when replicas change mid-rollout (the
rollout still converges), and rollback through ``spec.rollbackTo``.

Then it writes the status (counts, Available and Progressing conditions, see
``_deployment_status``) and prunes old ReplicaSets beyond
``revisionHistoryLimit``. A changed template (an image, or the
``kubectl.kubernetes.io/restartedAt`` annotation ``kubectl rollout restart``
sets) is a new rollout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sandbox.errors import ApiError

from ._base import ClusterLike, Controller, Key, Record, RetryLater
from ._deployment_status import (
    deployment_complete,
    new_condition,
    set_condition,
    sync_rollout_status,
)
from ._hash import compute_hash
from ._meta import (
    Obj,
    clone,
    controller_ref,
    is_owned_by,
    key_of,
    labels_of,
    matches_selector,
    now_rfc3339,
)
from ._owned import claim, owner_keys
from ._revisions import (
    HASH_LABEL,
    REVISION,
    created_order,
    equal_ignore_hash,
    max_surge,
    replicas,
    revision,
    rolling_params,
    set_new_rs_annotations,
    set_replicas_annotations,
)
from ._rollout import RS, new_rs_replicas, old_scale_down_plan

__all__ = ["DeploymentController", "run_deployment"]

RESOURCE = "deployments.apps"
REPLICASETS = "replicasets.apps"
log = logging.getLogger("sandbox.controllers.deployment")


class DeploymentController(Controller):
    name = "deployment"
    component = "deployment-controller"
    primary = RESOURCE

    def keys_for(self, event: str, resource: str, obj: Obj) -> Iterable[Key]:
        ns, name = key_of(obj)
        if resource == RESOURCE:
            return [(ns, name)]
        if resource == REPLICASETS:
            return owner_keys(
                self.store, event, obj, owner_resource=RESOURCE, owner_kind="Deployment"
            )
        if resource == "pods" and event == "DELETED":
            # Recreate waits for old pods to be gone.
            ref = controller_ref(obj)
            if ref is None or ref.get("kind") != "ReplicaSet":
                return []
            rs = self.store.get(REPLICASETS, ns, ref["name"])
            owner = controller_ref(rs) if rs else None
            if owner is not None and owner.get("kind") == "Deployment":
                return [(ns, owner["name"])]
        return []

    async def reconcile(self, key: Key) -> float | None:
        ns, name = key
        current = self.store.get(RESOURCE, ns, name)
        if current is None:
            return None
        d = current  # the store hands out copies
        stored_status = clone(d.get("status") or {})
        selector = (d.get("spec") or {}).get("selector")
        rs_list = await claim(
            self.cluster,
            REPLICASETS,
            d,
            self.store.list(REPLICASETS, ns),
            lambda rs: matches_selector(selector, labels_of(rs)),
        )
        sync = _Sync(self.cluster, d, rs_list, stored_status, self.event)
        if d["metadata"].get("deletionTimestamp"):
            return await sync.status_only()
        if d["spec"].get("paused"):
            return await sync.paused()
        strategy = (d["spec"].get("strategy") or {}).get("type", "RollingUpdate")
        if strategy == "Recreate":
            return await sync.recreate(self._old_pods_running)
        return await sync.rolling_update()

    def _old_pods_running(self, old_rs: list[Obj]) -> bool:
        """``oldPodsRunning``: any pod of an old ReplicaSet not yet finished or gone."""
        if any(int((rs.get("status") or {}).get("replicas") or 0) > 0 for rs in old_rs):
            return True
        if not old_rs:
            return False
        uids = {rs["metadata"]["uid"] for rs in old_rs}
        for pod in self.store.list("pods", old_rs[0]["metadata"]["namespace"]):
            ref = controller_ref(pod)
            phase = (pod.get("status") or {}).get("phase")
            if ref and ref.get("uid") in uids and phase not in ("Failed", "Succeeded"):
                return True
        return False


class _Sync:
    """One sync of one Deployment: the objects it read and wrote along the way."""

    def __init__(
        self, cluster: ClusterLike, d: Obj, rs_list: list[Obj], stored_status: Obj, record: Record
    ) -> None:
        self.cluster = cluster
        self.record = record
        self.d = d
        self.rs_list = rs_list
        self.stored_status = stored_status
        self.new_rs: Obj | None = None

    @property
    def old_rs(self) -> list[Obj]:
        new_uid = self.new_rs["metadata"]["uid"] if self.new_rs else None
        olds = [rs for rs in self.rs_list if rs["metadata"]["uid"] != new_uid]
        return sorted(olds, key=created_order)

    @property
    def all_rs(self) -> list[Obj]:
        return [*self.old_rs, *([self.new_rs] if self.new_rs else [])]

    # -- the strategies ---------------------------------------------------------------

    async def rolling_update(self) -> float | None:
        new_rs = await self._new_replicaset(create=True)
        assert new_rs is not None
        desired = replicas(self.d)
        if replicas(new_rs) != desired:
            if replicas(new_rs) > desired:
                target = desired
            else:
                target = new_rs_replicas(
                    desired=desired,
                    max_surge=rolling_params(self.d)[0],
                    max_unavailable=rolling_params(self.d)[1],
                    all_rs=[self._rs(rs) for rs in self.all_rs],
                    new_rs=self._rs(new_rs),
                )
            if target != replicas(new_rs):
                await self._scale(new_rs, target)
                return await self._write_status()
        plan = old_scale_down_plan(
            desired=desired,
            max_surge=rolling_params(self.d)[0],
            max_unavailable=rolling_params(self.d)[1],
            new_rs=self._rs(new_rs),
            old_rs=[self._rs(rs) for rs in self.old_rs],
        )
        if plan:
            for rs in self.old_rs:
                if rs["metadata"]["name"] in plan:
                    await self._scale(rs, plan[rs["metadata"]["name"]])
            return await self._write_status()
        return await self._write_status(cleanup=True)

    async def recreate(self, old_pods_running: Callable[[list[Obj]], bool]) -> float | None:
        await self._new_replicaset(create=False)
        scaled = False
        for rs in self.old_rs:
            if replicas(rs) > 0:
                await self._scale(rs, 0)
                scaled = True
        if scaled or old_pods_running(self.old_rs):
            return await self._write_status()
        new_rs = self.new_rs or await self._new_replicaset(create=True)
        assert new_rs is not None
        if replicas(new_rs) != replicas(self.d):
            await self._scale(new_rs, replicas(self.d))
        return await self._write_status(cleanup=True)

    async def paused(self) -> float | None:
        """A paused Deployment rolls nothing out, but a scale change still applies
        when a single ReplicaSet is active (proportional scaling is not modelled)."""
        self.new_rs = self._find_new()
        active = [rs for rs in self.rs_list if replicas(rs) > 0]
        target = active[0] if len(active) == 1 else (self.new_rs if not active else None)
        if target is not None and replicas(target) != replicas(self.d):
            await self._scale(target, replicas(self.d))
        return await self._write_status()

    async def status_only(self) -> float | None:
        self.new_rs = self._find_new()
        return await self._write_status()

    # -- ReplicaSets --------------------------------------------------------------------

    @staticmethod
    def _rs(rs: Mapping[str, Any]) -> RS:
        available = int((rs.get("status") or {}).get("availableReplicas") or 0)
        return RS(rs["metadata"]["name"], replicas(rs), available)

    def _find_new(self) -> Obj | None:
        template = self.d["spec"].get("template") or {}
        olds = sorted(self.rs_list, key=created_order)
        for rs in olds:
            if equal_ignore_hash((rs.get("spec") or {}).get("template") or {}, template):
                return rs
        # Defaulting or admission may make an owned ReplicaSet's template differ from the
        # Deployment's; the name still says which template it was made from.
        wanted = self._rs_name()
        return next((rs for rs in olds if rs["metadata"]["name"] == wanted), None)

    def _hash(self) -> str:
        count = (self.d.get("status") or {}).get("collisionCount")
        return compute_hash(self.d["spec"].get("template") or {}, count)

    def _rs_name(self) -> str:
        return f"{self.d['metadata']['name']}-{self._hash()}"

    async def _new_replicaset(self, *, create: bool) -> Obj | None:
        """``getNewReplicaSet``: find (and sync the revision of) or create the new one."""
        existing = self._find_new()
        max_old = max((revision(rs) for rs in self.rs_list if rs is not existing), default=0)
        if existing is not None:
            self.new_rs = existing
            copy = clone(existing)
            changed = set_new_rs_annotations(self.d, copy, max_old + 1, exists=True)
            min_ready = self.d["spec"].get("minReadySeconds", 0)
            if copy["spec"].get("minReadySeconds", 0) != min_ready:
                copy["spec"]["minReadySeconds"] = min_ready
                changed = True
            if changed:
                self._replace(await self.cluster.update(REPLICASETS, copy))
            await self._set_deployment_revision(revision(self.new_rs or existing))
            return self.new_rs
        if not create:
            return None
        rs = self._build_replicaset()
        self.new_rs = rs
        rs["spec"]["replicas"] = self._initialreplicas(rs)
        set_new_rs_annotations(self.d, rs, max_old + 1, exists=False)
        try:
            created = await self.cluster.create(
                REPLICASETS, rs, namespace=rs["metadata"]["namespace"]
            )
        except ApiError as exc:
            self.new_rs = None
            if exc.code != 409:
                raise
            await self._on_name_taken(rs)
            raise RetryLater(f"replicaset {rs['metadata']['name']} already exists") from exc
        self.rs_list.append(created)
        self.new_rs = created
        if replicas(created) > 0:
            self._scaled(created, 0, replicas(created))
        status = self.d.setdefault("status", {})
        set_condition(
            status,
            new_condition(
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                f'Created new replica set "{created["metadata"]["name"]}"',
                now_rfc3339(),
            ),
        )
        await self._set_deployment_revision(max_old + 1)
        return created

    def _initialreplicas(self, rs: Obj) -> int:
        strategy = (self.d["spec"].get("strategy") or {}).get("type", "RollingUpdate")
        if strategy != "RollingUpdate":
            return replicas(self.d)
        surge, unavailable = rolling_params(self.d)
        return new_rs_replicas(
            desired=replicas(self.d),
            max_surge=surge,
            max_unavailable=unavailable,
            all_rs=[self._rs(r) for r in self.rs_list] + [RS(rs["metadata"]["name"], 0)],
            new_rs=RS(rs["metadata"]["name"], 0),
        )

    def _build_replicaset(self) -> Obj:
        pod_hash = self._hash()
        template = clone(self.d["spec"].get("template") or {})
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
        selector = clone(self.d["spec"].get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        meta = self.d["metadata"]
        return {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{pod_hash}",
                "namespace": meta["namespace"],
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": self.d["spec"].get("minReadySeconds", 0),
                "selector": selector,
                "template": template,
            },
        }

    async def _on_name_taken(self, rs: Obj) -> None:
        """A ReplicaSet by that name exists but is not ours: count a hash collision."""
        meta = rs["metadata"]
        taken = self.cluster.store.get(REPLICASETS, meta["namespace"], meta["name"])
        if taken is not None and is_owned_by(taken, self.d):
            return  # ours, only just created: the next sync finds it
        status = self.d.setdefault("status", {})
        status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
        fresh = clone(self.d)
        fresh["status"] = {**self.stored_status, "collisionCount": status["collisionCount"]}
        await self.cluster.update(RESOURCE, fresh, subresource="status")

    async def _set_deployment_revision(self, number: int) -> None:
        """``SetDeploymentRevision``: the Deployment carries its new ReplicaSet's revision."""
        annotations = self.d["metadata"].setdefault("annotations", {})
        if annotations.get(REVISION) == str(number):
            return
        annotations[REVISION] = str(number)
        body = clone(self.d)
        body["status"] = clone(self.stored_status)
        pending_status = self.d.get("status") or {}
        self.d = await self.cluster.update(RESOURCE, body)
        self.d["status"] = pending_status

    def _replace(self, rs: Obj) -> None:
        uid = rs["metadata"]["uid"]
        self.rs_list = [rs if r["metadata"]["uid"] == uid else r for r in self.rs_list]
        if self.new_rs is not None and self.new_rs["metadata"]["uid"] == uid:
            self.new_rs = rs

    async def _scale(self, rs: Obj, count: int) -> None:
        """``scaleReplicaSet``: set replicas and the desired/max-replicas annotations."""
        copy = clone(rs)
        copy["spec"]["replicas"] = count
        set_replicas_annotations(copy, replicas(self.d), replicas(self.d) + max_surge(self.d))
        if copy == rs:
            return
        log.debug("scaling %s to %d", rs["metadata"]["name"], count)
        self._replace(await self.cluster.update(REPLICASETS, copy))
        if count != replicas(rs):
            self._scaled(rs, replicas(rs), count)

    def _scaled(self, rs: Obj, before: int, after: int) -> None:
        way = "up" if after > before else "down"
        name = rs["metadata"]["name"]
        self.record(
            self.d, "ScalingReplicaSet", f"Scaled {way} replica set {name} from {before} to {after}"
        )

    # -- status and history ----------------------------------------------------------------

    async def _write_status(self, *, cleanup: bool = False) -> float | None:
        status, recheck = sync_rollout_status(
            self.d,
            self.all_rs,
            self.new_rs,
            now=datetime.now(UTC),
            stored_status=self.stored_status,
        )
        if cleanup and deployment_complete(self.d, status):
            await self._cleanup()
        if status != self.stored_status:
            fresh = clone(self.d)
            fresh["status"] = status
            self.d = await self.cluster.update(RESOURCE, fresh, subresource="status")
        return recheck

    async def _cleanup(self) -> None:
        """``cleanupDeployment``: delete the oldest idle ReplicaSets beyond the history limit."""
        limit = int(self.d["spec"].get("revisionHistoryLimit", 10))
        cleanable = [rs for rs in self.old_rs if not rs["metadata"].get("deletionTimestamp")]
        excess = len(cleanable) - limit
        if excess <= 0:
            return
        for rs in sorted(cleanable, key=revision)[:excess]:
            status = rs.get("status") or {}
            if replicas(rs) != 0 or int(status.get("replicas") or 0) != 0:
                continue
            if int(status.get("observedGeneration") or 0) < rs["metadata"].get("generation", 1):
                continue
            try:
                await self.cluster.delete(
                    REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"]
                )
            except ApiError as exc:
                if exc.code != 404:
                    raise


async def run_deployment(cluster: ClusterLike) -> None:
    """Run the Deployment controller until cancelled."""
    await DeploymentController(cluster).run()
