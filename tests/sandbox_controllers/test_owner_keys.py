"""Which owners an event on a child concerns (``sandbox.controllers._owned.owner_keys``).

Covers: a child with a controller reference concerns that owner when the
reference is of the owner kind, and no owner otherwise (even one whose
selector matches); an orphan concerns every owner in its namespace whose
selector matches it, never one in another namespace; a deleted orphan concerns
none; ``may_own`` narrows the orphan's candidates.
"""

from __future__ import annotations

from typing import Any

from sandbox.controllers._owned import owner_keys
from sandbox.store import Store

RS = "replicasets.apps"


def replicaset(name: str, namespace: str, app: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
        "spec": {"selector": {"matchLabels": {"app": app}}},
    }


def pod(app: str, owner: tuple[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "namespace": "ns", "labels": {"app": app}}
    if owner is not None:
        kind, name = owner
        meta["ownerReferences"] = [
            {"kind": kind, "name": name, "uid": f"uid-{name}", "controller": True}
        ]
    return {"metadata": meta}


def store() -> Store:
    s = Store()
    for name, namespace, app in [
        ("web-a", "ns", "web"),
        ("web-b", "ns", "web"),
        ("db", "ns", "db"),
        ("web-elsewhere", "other", "web"),
    ]:
        s.put(RS, replicaset(name, namespace, app))
    return s


def keys(event: str, child: dict[str, Any], **kw: Any) -> list[tuple[str, str]]:
    return sorted(
        owner_keys(store(), event, child, owner_resource=RS, owner_kind="ReplicaSet", **kw)
    )


def test_a_controlled_child_concerns_only_its_controller() -> None:
    assert keys("MODIFIED", pod("web", ("ReplicaSet", "db"))) == [("ns", "db")]
    assert keys("DELETED", pod("web", ("ReplicaSet", "db"))) == [("ns", "db")]
    assert keys("ADDED", pod("web", ("StatefulSet", "web-a"))) == []


def test_an_orphan_concerns_every_matching_owner_in_its_namespace() -> None:
    assert keys("ADDED", pod("web")) == [("ns", "web-a"), ("ns", "web-b")]
    assert keys("MODIFIED", pod("db")) == [("ns", "db")]
    assert keys("ADDED", pod("cache")) == []
    assert keys("DELETED", pod("web")) == []


def test_may_own_narrows_an_orphans_owners() -> None:
    only_b = keys("ADDED", pod("web"), may_own=lambda o: o["metadata"]["name"].endswith("-b"))
    assert only_b == [("ns", "web-b")]
