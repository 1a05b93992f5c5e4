"""Preview URLs served by the manager's router (``waylay install --preview-domain D``).

The client asks its manager over the client API (``Request`` ops
``preview-create``/``-revoke``/``-list``; pass ``session.request``). A manager
without a preview domain answers ``unavailable`` (or, if older, "unknown
operation"): ``create_cluster_preview`` then returns None, and the caller
serves the preview from the workstation (``core.preview_server``) instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from core.errors import ManagerRefused
from core.preview_models import PreviewEntry, PreviewTarget

__all__ = [
    "RequestFn",
    "create_cluster_preview",
    "list_cluster_previews",
    "revoke_cluster_preview",
]

RequestFn = Callable[[str, dict[str, Any]], Awaitable[Any]]
"""``Session.request``: (op, params) -> result; raises ManagerRefused."""


def _no_router(exc: ManagerRefused) -> bool:
    return exc.problem_code == "unavailable" or (
        exc.problem_code == "bad-request" and "unknown op" in (exc.detail or "").lower()
    )


async def create_cluster_preview(
    request: RequestFn,
    intercept: str,
    target: PreviewTarget,
    headers: Mapping[str, str] | None = None,
) -> PreviewEntry | None:
    """A preview URL of our intercept ``intercept`` (its name), or None without a router."""
    params = {
        "name": intercept,
        "target": target.model_dump(mode="json"),
        "headers": dict(headers or {}),
    }
    try:
        result = await request("preview-create", params)
    except ManagerRefused as exc:
        if _no_router(exc):
            return None
        raise
    return PreviewEntry.model_validate(result)


async def revoke_cluster_preview(request: RequestFn, token: str) -> PreviewEntry:
    return PreviewEntry.model_validate(await request("preview-revoke", {"token": token}))


async def list_cluster_previews(request: RequestFn) -> list[dict[str, Any]]:
    """Every live preview URL in the cluster: token, url, intercept_id, target,
    header_names (values are not shown)."""
    result = await request("preview-list", {})
    return list(result or [])
