"""The service layer: every change to the cluster goes through :class:`Cluster`.

HTTP handlers and in-process controllers share it. A write runs the same steps
as kube-apiserver's registry: kind check -> defaulting -> mutating admission
-> name generation -> validation -> optimistic-concurrency check -> store ->
notify (watches first, then ``subscribe`` callbacks). Everything after the
admission ``await`` is synchronous, so a write is atomic on the event loop.

Deletion honours finalizers (``deletionTimestamp`` is set and the object stays
until they are gone), ``propagationPolicy`` (``Orphan`` here; ``Background``
and ``Foreground`` by :mod:`sandbox.gc`) and namespace termination.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from sandbox.auth import SYSTEM, UserInfo
from sandbox.defaults import apply_defaults
from sandbox.errors import ApiError, already_exists, bad_request, conflict, forbidden, not_found
from sandbox.ipam import Ipam
from sandbox.patch import apply_patch
from sandbox.resources import ResourceType, by_key
from sandbox.selectors import format_label_selector
from sandbox.serviceips import ServiceAddresses
from sandbox.store import Store, copy_json
from sandbox.validation import validate, validate_update
from sandbox.watch import Event, WatchHub

__all__ = ["Admission", "Cluster", "Subscriber", "now_rfc3339"]

Obj = dict[str, Any]
Subscriber = Callable[[str, str, Obj], None]

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_PATCH_RETRIES = 5


class Admission(Protocol):
    """What :class:`sandbox.admission.MutatingAdmission` offers the service layer."""

    async def admit(
        self,
        *,
        operation: str,
        resource: str,
        obj: Obj,
        old: Obj | None,
        namespace: str | None,
        user: UserInfo,
        dry_run: bool,
    ) -> Obj: ...


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_part(obj: Obj) -> Obj:
    """Everything that counts towards ``metadata.generation``."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _same_ignoring_version(a: Obj, b: Obj) -> bool:
    a_meta = {k: v for k, v in a.get("metadata", {}).items() if k != "resourceVersion"}
    b_meta = {k: v for k, v in b.get("metadata", {}).items() if k != "resourceVersion"}
    return a_meta == b_meta and {k: v for k, v in a.items() if k != "metadata"} == {
        k: v for k, v in b.items() if k != "metadata"
    }


class Cluster:
    """The cluster's state and the only way to change it."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        admission: Admission | None = None,
        ipam: Ipam | None = None,
        history: int = 10_000,
    ) -> None:
        self.store = store or Store()
        self.admission = admission
        """Mutating admission; None skips it (set by the server once it exists)."""
        self.watches = WatchHub(history)
        self._owns_ipam = ipam is None
        self.ipam = ipam or Ipam.claim()
        """Loopback address pools: Service ClusterIPs here, pod IPs for the kubelet."""
        self._subscribers: list[Subscriber] = []
        self.service_addresses = ServiceAddresses(self.ipam)
        if self.store.revision:
            # Loaded from a snapshot: old watch versions are gone, addresses are taken.
            self.watches.compact(self.store.revision)
            self.service_addresses.restore(self.store.list("services"))

    def close(self) -> None:
        """Give back the address block if this cluster claimed it."""
        if self._owns_ipam:
            self.ipam.close()

    # -- notification --------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback(event_type, resource, obj)`` after every committed change.

        Called on the loop, in resourceVersion order, with a copy the callback
        may keep; it must not block.
        """
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def _notify(self, event_type: str, resource: str, obj: Obj, old: Obj | None = None) -> None:
        self.watches.publish(Event(event_type, resource, copy_json(obj), old))
        for callback in list(self._subscribers):
            callback(event_type, resource, copy_json(obj))

    def compact(self) -> int:
        """Forget the watch history up to now (watches from older versions get 410)."""
        self.watches.compact(self.store.revision)
        return self.store.revision

    # -- reads ---------------------------------------------------------------

    def get(self, resource: str, namespace: str | None, name: str) -> Obj:
        """One object; 404 ``NotFound`` when it does not exist."""
        rt = by_key(resource)
        obj = self.store.get(resource, namespace if rt.namespaced else None, name)
        if obj is None:
            raise not_found(resource, name)
        return obj

    # -- create --------------------------------------------------------------

    async def create(
        self,
        resource: str,
        obj: Obj,
        *,
        namespace: str | None = None,
        user: UserInfo = SYSTEM,
        dry_run: bool = False,
    ) -> Obj:
        """Create ``obj``; 409 ``AlreadyExists``, 422 ``Invalid``, 404 for a missing namespace."""
        rt = by_key(resource)
        obj = copy_json(obj)
        self._check_kind(rt, obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        ns = self._namespace_for(rt, meta, namespace)
        for key in ("resourceVersion", "uid", "deletionTimestamp", "managedFields"):
            meta.pop(key, None)
        if rt.has_status:
            obj.pop("status", None)
        apply_defaults(resource, obj)
        if self.admission is not None:
            obj = await self.admission.admit(
                operation="CREATE",
                resource=resource,
                obj=obj,
                old=None,
                namespace=ns,
                user=user,
                dry_run=dry_run,
            )
            apply_defaults(resource, obj)
            meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self._generate_name(rt, ns, str(meta["generateName"]))
        elif not meta.get("name"):
            validate(rt, obj)  # reports metadata.name: Required value
        if rt.key == "namespaces":
            apply_defaults(resource, obj)  # the name label
        validate(rt, obj)
        self._check_namespace(rt, ns, meta["name"], creating=True)
        if self.store.get(resource, ns, meta["name"]) is not None:
            raise already_exists(resource, meta["name"])
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if any(k not in ("apiVersion", "kind", "metadata", "status") for k in obj):
            meta["generation"] = 1
        if resource == "services":
            self.service_addresses.assign(obj, None, dry_run=dry_run)
        if dry_run:
            return obj
        stored = self.store.put(resource, obj)
        self._notify("ADDED", resource, stored)
        return stored

    def _generate_name(self, rt: ResourceType, ns: str | None, prefix: str) -> str:
        for _ in range(16):
            name = prefix + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))
            if self.store.get(rt.key, ns, name) is None:
                return name
        raise ApiError(500, "InternalError", f"could not generate a free name from {prefix!r}")

    # -- update --------------------------------------------------------------

    async def update(
        self,
        resource: str,
        obj: Obj,
        *,
        subresource: str | None = None,
        user: UserInfo = SYSTEM,
        dry_run: bool = False,
    ) -> Obj:
        """Replace an object, its ``status`` or its ``scale``; 409 on a stale resourceVersion."""
        rt = by_key(resource)
        obj = copy_json(obj)
        meta = obj.get("metadata") or {}
        name = meta.get("name") or ""
        ns = (meta.get("namespace") or None) if rt.namespaced else None
        if not name:
            raise bad_request("name is required in metadata to update an object")
        if rt.namespaced and not ns:
            raise bad_request("namespace is required in metadata to update a namespaced object")
        old = self.get(resource, ns, name)
        wanted_version = meta.get("resourceVersion") or None
        if wanted_version and wanted_version != old["metadata"]["resourceVersion"]:
            raise conflict(resource, name, _STALE)
        if subresource == "scale":
            new = self._from_scale(rt, old, obj)
        elif subresource == "status":
            new = copy_json(old)
            new["status"] = obj.get("status", {})
        elif subresource:
            raise ApiError(405, "MethodNotAllowed", f"{resource}/{subresource} cannot be updated")
        else:
            self._check_kind(rt, obj)
            new = self._merge_update(rt, old, obj)
            apply_defaults(resource, new)
            if self.admission is not None:
                new = await self.admission.admit(
                    operation="UPDATE",
                    resource=resource,
                    obj=new,
                    old=old,
                    namespace=ns,
                    user=user,
                    dry_run=dry_run,
                )
                apply_defaults(resource, new)
                current = self.get(resource, ns, name)
                if current["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"]:
                    if wanted_version:
                        raise conflict(resource, name, _STALE)
                    old = current  # an unconditional update applies to the latest object
                    new = self._merge_update(rt, old, new)
        validate(rt, new)
        validate_update(rt, old, new)
        return self._commit_update(rt, old, new, dry_run=dry_run)

    def _merge_update(self, rt: ResourceType, old: Obj, obj: Obj) -> Obj:
        """The object a PUT asks for, with what a PUT may not change carried over."""
        new = obj
        meta = new.setdefault("metadata", {})
        old_meta = old["metadata"]
        for key in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta.pop("managedFields", None)
        if rt.namespaced:
            meta["namespace"] = old_meta["namespace"]
        if rt.has_status or rt.key == "namespaces":
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if rt.key == "services":
            self.service_addresses.assign(new, old, dry_run=True)
        return new

    def _commit_update(self, rt: ResourceType, old: Obj, new: Obj, *, dry_run: bool) -> Obj:
        meta = new["metadata"]
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        if "generation" in old["metadata"]:
            generation = int(old["metadata"]["generation"])
            meta["generation"] = generation + (_spec_part(new) != _spec_part(old))
        if _same_ignoring_version(new, old):
            return old
        if rt.key == "services" and not dry_run:
            self.service_addresses.assign(new, old, dry_run=False)
        if dry_run:
            return new
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and old["metadata"].get("finalizers")
            and not meta.get("deletionGracePeriodSeconds")
        ):
            self.store.put(rt.key, new)  # the last finalizer is gone: delete what remains
            return self._remove(rt, new)
        stored = self.store.put(rt.key, new)
        self._notify("MODIFIED", rt.key, stored, old)
        return stored

    # -- patch ---------------------------------------------------------------

    async def patch(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: str,
        subresource: str | None = None,
        user: UserInfo = SYSTEM,
        dry_run: bool = False,
    ) -> Obj:
        """Patch an object (``patch_type`` ``json``/``merge``/``strategic``/``apply``).

        A server-side ``apply`` of an object that does not exist creates it.
        """
        rt = by_key(resource)
        ns = namespace if rt.namespaced else None
        for attempt in range(_PATCH_RETRIES):
            current = self.store.get(resource, ns, name)
            if current is None:
                if patch_type == "apply" and not subresource:
                    body = copy_json(patch)
                    body.setdefault("metadata", {})["name"] = name
                    return await self.create(
                        resource, body, namespace=ns, user=user, dry_run=dry_run
                    )
                raise not_found(resource, name)
            base = self._to_scale(rt, current) if subresource == "scale" else current
            patched = apply_patch(base, patch, patch_type)
            meta = patched.setdefault("metadata", {})
            if not isinstance(meta, dict):
                raise bad_request("metadata must be an object")
            pinned = meta.get("resourceVersion") != base["metadata"].get("resourceVersion")
            if patch_type == "apply":
                pinned = False
                meta["resourceVersion"] = base["metadata"]["resourceVersion"]
            meta["name"], meta["namespace"] = name, ns
            if not rt.namespaced and subresource != "scale":
                meta.pop("namespace", None)
            try:
                return await self.update(
                    resource, patched, subresource=subresource, user=user, dry_run=dry_run
                )
            except ApiError as exc:
                if exc.reason != "Conflict" or pinned or attempt == _PATCH_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    # -- scale ---------------------------------------------------------------

    def scale(self, resource: str, namespace: str | None, name: str) -> Obj:
        """The ``autoscaling/v1 Scale`` of a Deployment, ReplicaSet or StatefulSet."""
        rt = by_key(resource)
        if "scale" not in rt.subresources:
            raise not_found(f"{resource}/scale", name)
        return self._to_scale(rt, self.get(resource, namespace, name))

    @staticmethod
    def _to_scale(rt: ResourceType, obj: Obj) -> Obj:
        meta = obj["metadata"]
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": int(spec.get("replicas", 0))},
            "status": {
                "replicas": int(status.get("replicas", 0)),
                "selector": format_label_selector(spec.get("selector")),
            },
        }

    @staticmethod
    def _from_scale(rt: ResourceType, old: Obj, scale: Obj) -> Obj:
        if "scale" not in rt.subresources:
            raise not_found(f"{rt.key}/scale", old["metadata"]["name"])
        if scale.get("kind", "Scale") != "Scale":
            raise bad_request(f"expected a Scale object, got kind {scale.get('kind')!r}")
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(
                422,
                "Invalid",
                f'Scale.autoscaling "{old["metadata"]["name"]}" is invalid: spec.replicas: '
                f"Invalid value: {replicas!r}: must be greater than or equal to 0",
            )
        new: Obj = copy_json(old)
        new.setdefault("spec", {})["replicas"] = replicas
        return new

    # -- delete --------------------------------------------------------------

    async def delete(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        *,
        propagation: str = "Background",
        user: UserInfo = SYSTEM,
        dry_run: bool = False,
        preconditions: Obj | None = None,
        grace_period_seconds: int | None = None,
    ) -> Obj:
        """Delete an object. Returns it: gone, or still there with ``deletionTimestamp``
        while finalizers (``foregroundDeletion``, namespace content) are pending.

        A pod running on a node (``spec.nodeName``) is deleted gracefully: it gets a
        ``deletionTimestamp`` and ``deletionGracePeriodSeconds`` (from
        ``grace_period_seconds``, else its ``terminationGracePeriodSeconds``) and the
        kubelet removes it (a DELETE with grace 0) once its containers stopped.
        """
        rt = by_key(resource)
        ns = namespace if rt.namespaced else None
        obj = self.get(resource, ns, name)
        meta = obj["metadata"]
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise conflict(
                resource, name, "Precondition failed: UID in precondition does not match"
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise conflict(resource, name, _STALE)
        if propagation not in ("Background", "Foreground", "Orphan"):
            raise bad_request(
                f"propagationPolicy: Unsupported value: {propagation!r}: supported values: "
                '"Background", "Foreground", "Orphan"'
            )
        if dry_run:
            return obj
        grace = self._grace(rt, obj, grace_period_seconds)
        if meta.get("deletionTimestamp"):
            if rt.key == "pods" and grace == 0 and meta.get("deletionGracePeriodSeconds"):
                if not meta.get("finalizers"):
                    return self._remove(rt, obj)
                meta["deletionGracePeriodSeconds"] = 0
                return self._put_modified(rt, obj)
            return obj
        if propagation == "Orphan":
            await self._orphan(meta["uid"])
        finalizers = list(meta.get("finalizers") or [])
        if propagation == "Foreground" and FOREGROUND not in finalizers:
            finalizers.append(FOREGROUND)
        if rt.key == "namespaces":
            meta["deletionTimestamp"] = now_rfc3339()
            obj.setdefault("status", {})["phase"] = "Terminating"
            return self._put_modified(rt, obj)
        if finalizers or grace:
            if finalizers:
                meta["finalizers"] = finalizers
            meta["deletionTimestamp"] = now_rfc3339()
            meta["deletionGracePeriodSeconds"] = grace
            return self._put_modified(rt, obj)
        return self._remove(rt, obj)

    @staticmethod
    def _grace(rt: ResourceType, obj: Obj, requested: int | None) -> int:
        """Seconds a pod gets to stop; 0 (delete at once) for everything else."""
        if rt.key != "pods":
            return 0
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        if requested is None:
            requested = int(spec.get("terminationGracePeriodSeconds", 30))
        return max(int(requested), 0)

    async def _orphan(self, uid: str) -> None:
        for resource, dependent in self.store.owned_by(uid):
            dependent["metadata"]["ownerReferences"] = [
                ref for ref in dependent["metadata"]["ownerReferences"] if ref.get("uid") != uid
            ]
            if not dependent["metadata"]["ownerReferences"]:
                del dependent["metadata"]["ownerReferences"]
            try:
                await self.update(resource, dependent)
            except ApiError as exc:
                if exc.code != 404:
                    raise

    def finalize_namespace(self, name: str) -> Obj | None:
        """Remove a terminating namespace once its content is gone (the namespace controller's)."""
        ns = self.store.get("namespaces", None, name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return None
        if ns["metadata"].get("finalizers"):
            return None
        return self._remove(by_key("namespaces"), ns)

    def _put_modified(self, rt: ResourceType, obj: Obj) -> Obj:
        old = self.store.get(rt.key, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        stored = self.store.put(rt.key, obj)
        self._notify("MODIFIED", rt.key, stored, old)
        return stored

    def _remove(self, rt: ResourceType, obj: Obj) -> Obj:
        meta = obj["metadata"]
        removed = self.store.remove(rt.key, meta.get("namespace"), meta["name"])
        if removed is None:
            raise not_found(rt.key, meta["name"])
        if rt.key == "services":
            self.service_addresses.release(removed)
        self._notify("DELETED", rt.key, removed)
        return removed

    # -- helpers -------------------------------------------------------------

    @staticmethod
    def _check_kind(rt: ResourceType, obj: Obj) -> None:
        kind = obj.setdefault("kind", rt.kind)
        api_version = obj.setdefault("apiVersion", rt.api_version)
        if kind != rt.kind or api_version != rt.api_version:
            raise bad_request(
                f"the object provided is {api_version or '?'}, Kind={kind or '?'}, but this "
                f"URL serves {rt.api_version}, Kind={rt.kind}: send it to its own resource URL"
            )

    def _namespace_for(self, rt: ResourceType, meta: Obj, namespace: str | None) -> str | None:
        if not rt.namespaced:
            meta.pop("namespace", None)
            return None
        in_body = meta.get("namespace") or None
        if namespace and in_body and namespace != in_body:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                f"the request ({in_body!r} in the object, {namespace!r} in the URL)"
            )
        ns = namespace or in_body
        if not ns:
            raise bad_request(f"a {rt.kind} must be created in a namespace: set metadata.namespace")
        meta["namespace"] = ns
        return str(ns)

    def _check_namespace(
        self, rt: ResourceType, ns: str | None, name: str, *, creating: bool
    ) -> None:
        if not rt.namespaced or ns is None:
            return
        namespace = self.store.get("namespaces", None, ns)
        if namespace is None:
            raise not_found("namespaces", ns)
        if creating and namespace["metadata"].get("deletionTimestamp"):
            raise forbidden(
                f'{rt.key} "{name}" is forbidden: unable to create new content in namespace '
                f"{ns} because it is being terminated",
                resource=rt.key,
                name=name,
            )


_STALE = (
    "the object has been modified; please apply your changes to the latest version and try again"
)
