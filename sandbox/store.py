"""The in-memory object store: plain JSON dicts keyed by resource, namespace and name.

The store is synchronous and knows nothing of HTTP, admission or watches; the
service layer (:mod:`sandbox.cluster`) is its only writer. Reads hand out
copies, so a caller can change what it got without touching the store.
Every write takes the next cluster-wide ``resourceVersion``.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Any

__all__ = ["Store", "copy_json"]

Obj = dict[str, Any]


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, scalars); faster than ``copy.deepcopy``."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


class Store:
    """Objects of every resource, and an index of them by ``metadata.uid``."""

    def __init__(self) -> None:
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self._uids: dict[str, tuple[str, str, str]] = {}
        self.revision = 0
        """The ``resourceVersion`` of the latest write (0 when empty)."""

    # -- reads ---------------------------------------------------------------

    def get(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        """A copy of one object, or None."""
        obj = self._objects.get(resource, {}).get((namespace or "", name))
        return copy_json(obj) if obj is not None else None

    def list(self, resource: str, namespace: str | None = None) -> list[Obj]:
        """Copies of every object of ``resource`` (in ``namespace`` if given), by namespace/name."""
        return [copy_json(obj) for obj in self._iter(resource, namespace)]

    def count(self, resource: str, namespace: str | None = None) -> int:
        return sum(1 for _ in self._iter(resource, namespace))

    def by_uid(self, uid: str) -> tuple[str, Obj] | None:
        """(resource, copy of object) for a ``metadata.uid``, or None."""
        where = self._uids.get(uid)
        if where is None:
            return None
        resource, namespace, name = where
        obj = self.get(resource, namespace, name)
        return (resource, obj) if obj is not None else None

    def owned_by(self, uid: str) -> builtins.list[tuple[str, Obj]]:
        """(resource, copy) of every object with an ownerReference to ``uid``."""
        found: builtins.list[tuple[str, Obj]] = []
        for resource, bucket in self._objects.items():
            for obj in bucket.values():
                refs = obj["metadata"].get("ownerReferences") or ()
                if any(ref.get("uid") == uid for ref in refs):
                    found.append((resource, copy_json(obj)))
        return found

    def resources(self) -> builtins.list[str]:
        """Keys of the resources that have ever held an object."""
        return list(self._objects)

    def _iter(self, resource: str, namespace: str | None) -> Iterator[Obj]:
        bucket = self._objects.get(resource, {})
        for key in sorted(bucket):
            if namespace is None or key[0] == namespace:
                yield bucket[key]

    # -- snapshots -------------------------------------------------------------

    def snapshot(self) -> Obj:
        """Everything, as one JSON-able dict (see :meth:`from_snapshot`)."""
        return {
            "revision": self.revision,
            "objects": {
                resource: [copy_json(obj) for _, obj in sorted(bucket.items())]
                for resource, bucket in self._objects.items()
                if bucket
            },
        }

    @classmethod
    def from_snapshot(cls, data: Obj) -> Store:
        """A store holding what :meth:`snapshot` returned, at the same revision."""
        store = cls()
        for resource, objects in dict(data.get("objects") or {}).items():
            for obj in objects:
                meta = obj["metadata"]
                key = (meta.get("namespace") or "", meta["name"])
                store._objects.setdefault(resource, {})[key] = copy_json(obj)
                if meta.get("uid"):
                    store._uids[meta["uid"]] = (resource, key[0], key[1])
        store.revision = int(data.get("revision", 0))
        return store

    # -- writes (the service layer's) ----------------------------------------

    def next_revision(self) -> int:
        self.revision += 1
        return self.revision

    def put(self, resource: str, obj: Obj) -> Obj:
        """Store ``obj`` (with a new resourceVersion stamped in); return a copy of it."""
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self.next_revision())
        key = (meta.get("namespace") or "", meta["name"])
        stored: Obj = copy_json(obj)
        self._objects.setdefault(resource, {})[key] = stored
        uid = meta.get("uid")
        if uid:
            self._uids[uid] = (resource, key[0], key[1])
        result: Obj = copy_json(stored)
        return result

    def remove(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        """Delete one object; return it with the resourceVersion of the deletion."""
        obj = self._objects.get(resource, {}).pop((namespace or "", name), None)
        if obj is None:
            return None
        self._uids.pop(obj["metadata"].get("uid", ""), None)
        obj["metadata"]["resourceVersion"] = str(self.next_revision())
        removed: Obj = obj
        return removed
