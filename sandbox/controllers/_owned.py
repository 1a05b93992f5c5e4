"""Claiming children the way ``controller.ControllerRefManager`` does.

A controller owns the children whose controller owner reference carries its
uid. It adopts orphans its selector matches (adding such a reference with
``controller`` and ``blockOwnerDeletion``), and releases children it owns that
its selector no longer matches. A controller being deleted adopts nothing.
``owner_keys`` is the other half: which owners an event on a child concerns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sandbox.errors import ApiError

from ._base import ClusterLike, Key, StoreLike
from ._meta import (
    Obj,
    clone,
    controller_ref,
    is_terminating,
    labels_of,
    matches_selector,
    owner_reference,
)

__all__ = ["claim", "owner_keys"]


def owner_keys(
    store: StoreLike,
    event: str,
    child: Obj,
    *,
    owner_resource: str,
    owner_kind: str,
    may_own: Callable[[Obj], bool] | None = None,
) -> list[Key]:
    """The keys of the owners an event on ``child`` concerns (``resolveControllerRef``).

    A child with a controller reference concerns that owner when it is an
    ``owner_kind``, and no other. An orphan concerns every ``owner_resource`` in
    its namespace whose selector matches it (and that ``may_own`` it, when
    given), since one of them may adopt it; a deleted orphan concerns none.
    """
    ns = (child.get("metadata") or {}).get("namespace") or ""
    ref = controller_ref(child)
    if ref is not None:
        return [(ns, ref["name"])] if ref.get("kind") == owner_kind else []
    if event == "DELETED":
        return []
    labels = labels_of(child)
    return [
        (ns, owner["metadata"]["name"])
        for owner in store.list(owner_resource, ns)
        if (may_own is None or may_own(owner))
        and matches_selector((owner.get("spec") or {}).get("selector"), labels)
    ]


async def claim(
    cluster: ClusterLike,
    resource: str,
    owner: Mapping[str, Any],
    children: list[Obj],
    matches: Callable[[Obj], bool],
) -> list[Obj]:
    """The children ``owner`` controls after adopting and releasing as needed."""
    uid = owner["metadata"]["uid"]
    owner_deleting = is_terminating(owner)
    claimed: list[Obj] = []
    for child in children:
        ref = controller_ref(child)
        if ref is not None:
            if ref.get("uid") != uid:
                continue
            if matches(child):
                claimed.append(child)
            elif not owner_deleting and not is_terminating(child):
                await _set_owner(cluster, resource, child, owner, adopt=False)
            continue
        if owner_deleting or is_terminating(child) or not matches(child):
            continue
        adopted = await _set_owner(cluster, resource, child, owner, adopt=True)
        if adopted is not None:
            claimed.append(adopted)
    return claimed


async def _set_owner(
    cluster: ClusterLike, resource: str, child: Obj, owner: Mapping[str, Any], *, adopt: bool
) -> Obj | None:
    updated = clone(child)
    meta = updated["metadata"]
    refs = [
        r for r in meta.get("ownerReferences") or [] if r.get("uid") != owner["metadata"]["uid"]
    ]
    if adopt:
        refs.append(owner_reference(owner))
    meta["ownerReferences"] = refs
    try:
        return await cluster.update(resource, updated)
    except ApiError as exc:
        if exc.code == 404:
            return None
        raise
