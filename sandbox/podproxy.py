"""``pods/log`` and ``pods/portforward``: the API server hands these to the kubelet.

The kubelet (:class:`sandbox.kubelet.Kubelet`) validates the container and
produces the bytes (or takes over the WebSocket); this module reads the query
options and streams the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from typing import Any, Protocol

from aiohttp import web

from sandbox.errors import bad_request

__all__ = ["LogSource", "serve_pod_subresource"]


class LogSource(Protocol):
    """The kubelet's side of ``pods/log`` and ``pods/portforward``."""

    def logs(
        self,
        namespace: str,
        pod: str,
        container: str | None,
        *,
        follow: bool = False,
        tail_lines: int | None = None,
        previous: bool = False,
    ) -> AsyncIterable[bytes]: ...

    async def portforward(
        self, request: web.Request, pod: dict[str, Any]
    ) -> web.StreamResponse: ...


async def serve_pod_subresource(
    request: web.Request,
    kubelet: LogSource | None,
    pod: dict[str, Any],
    subresource: str,
    *,
    closing: asyncio.Event,
) -> web.StreamResponse:
    """Answer ``pods/log`` or ``pods/portforward`` for ``pod`` (already authorized)."""
    if kubelet is None:
        raise bad_request(
            f"pods/{subresource} needs the sandbox kubelet, which is not running in this server"
        )
    if subresource == "portforward":
        return await kubelet.portforward(request, pod)
    return await _logs(request, kubelet, pod, closing)


async def _logs(
    request: web.Request, kubelet: LogSource, pod: dict[str, Any], closing: asyncio.Event
) -> web.StreamResponse:
    tail = request.query.get("tailLines")
    try:
        tail_lines = int(tail) if tail else None
    except ValueError:
        raise bad_request(f"tailLines: invalid value {tail!r}: must be an integer")
    meta = pod["metadata"]
    chunks = kubelet.logs(
        meta["namespace"],
        meta["name"],
        request.query.get("container") or None,
        follow=request.query.get("follow") == "true",
        tail_lines=tail_lines,
        previous=request.query.get("previous") == "true",
    )
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        async for chunk in chunks:
            if closing.is_set():
                break
            await response.write(chunk)
    except ConnectionResetError:
        pass
    return response
