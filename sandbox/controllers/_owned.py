"""Claiming children the way ``controller.ControllerRefManager`` does.

A controller owns the children whose controller owner reference carries its
uid. It adopts orphans its selector matches (adding such a reference with
``controller`` and ``blockOwnerDeletion``), and releases children it owns that
its selector no longer matches. A controller being deleted adopts nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sandbox.errors import ApiError

from ._base import ClusterLike
from ._meta import Obj, clone, controller_ref, is_terminating, owner_reference

__all__ = ["claim"]


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
