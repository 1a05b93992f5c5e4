"""Serving ``?watch=true``: newline-delimited ``{"type", "object"}`` events over chunked HTTP.

- no ``resourceVersion`` (or ``0``): synthetic ``ADDED`` for what exists now,
  then every later change;
- ``resourceVersion=N``: every change after N, nothing at or before it; when N
  is older than the retained history the stream carries one ``ERROR`` event
  with a 410 ``Expired`` Status and ends (the client must list again);
- with selectors, an object that starts or stops matching arrives as
  ``ADDED``/``DELETED``, as from the real watch cache;
- ``allowWatchBookmarks=true``: a ``BOOKMARK`` with the current version when
  the stream has been idle for ``bookmark_interval`` seconds;
- ``timeoutSeconds`` ends the stream cleanly; so does server shutdown.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from sandbox.apirequest import ListOptions
from sandbox.cluster import Cluster
from sandbox.errors import ApiError, bad_request
from sandbox.resources import ResourceType
from sandbox.selectors import FieldSelector, LabelSelector
from sandbox.tables import table
from sandbox.watch import Event

__all__ = ["serve_watch"]

_DEFAULT_TIMEOUT = 1800.0
_POLL = 0.5


def _line(
    event_type: str,
    obj: dict[str, Any],
    rt: ResourceType | None = None,
    as_table: str | None = None,
) -> bytes:
    if as_table and rt is not None:
        meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
        obj = table(rt, [obj], as_table, meta)
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _translate(
    event: Event, labels: LabelSelector, fields: FieldSelector
) -> tuple[str, dict[str, Any]] | None:
    """The event this watcher sees given its selectors, or None."""

    def matches(obj: dict[str, Any] | None) -> bool:
        return obj is not None and labels.matches(obj) and fields.matches(obj)

    now = matches(event.obj)
    if event.type != "MODIFIED" or event.old is None:
        return (event.type, event.obj) if now else None
    before = matches(event.old)
    if now and before:
        return "MODIFIED", event.obj
    if now:
        return "ADDED", event.obj
    if before:
        return "DELETED", event.obj
    return None


async def serve_watch(
    request: web.Request,
    cluster: Cluster,
    rt: ResourceType,
    namespace: str | None,
    options: ListOptions,
    *,
    closing: asyncio.Event,
    bookmark_interval: float,
    as_table: str | None = None,
) -> web.StreamResponse:
    """Stream the events of ``rt`` (in ``namespace``), as ``Table`` rows if ``as_table``."""
    labels = LabelSelector(options.label_selector)
    fields = FieldSelector(options.field_selector)
    version = options.resource_version
    if version not in ("", "0") and not version.isdigit():
        raise bad_request(f"resourceVersion: invalid value {version!r}: must be an integer")
    initial: list[dict[str, Any]] = []
    error: ApiError | None = None
    watcher = None
    try:
        if version in ("", "0"):
            watcher = cluster.watches.watch(rt.key, namespace, cluster.store.revision)
            initial = cluster.store.list(rt.key, namespace)
        else:
            watcher = cluster.watches.watch(rt.key, namespace, int(version))
    except ApiError as exc:
        error = exc

    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        if error is not None or watcher is None:
            assert error is not None
            await response.write(_line("ERROR", error.status()))
            return response
        for obj in initial:
            if labels.matches(obj) and fields.matches(obj):
                await response.write(_line("ADDED", obj, rt, as_table))
        await _pump(
            request,
            response,
            cluster,
            watcher,
            labels,
            fields,
            options,
            closing,
            bookmark_interval,
            rt,
            as_table,
        )
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        if watcher is not None:
            watcher.close()
    return response


async def _pump(
    request: web.Request,
    response: web.StreamResponse,
    cluster: Cluster,
    watcher: Any,
    labels: LabelSelector,
    fields: FieldSelector,
    options: ListOptions,
    closing: asyncio.Event,
    bookmark_interval: float,
    rt: ResourceType,
    as_table: str | None,
) -> None:
    timeout = options.timeout_seconds if options.timeout_seconds else _DEFAULT_TIMEOUT
    deadline = time.monotonic() + timeout
    last_sent = time.monotonic()
    while not closing.is_set():
        now = time.monotonic()
        if now >= deadline:
            return
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        event = await watcher.next(min(_POLL, deadline - now))
        if event is not None:
            seen = _translate(event, labels, fields)
            if seen is not None:
                await response.write(_line(*seen, rt, as_table))
                last_sent = time.monotonic()
            continue
        if options.allow_bookmarks and time.monotonic() - last_sent >= bookmark_interval:
            bookmark = {
                "kind": rt.kind,
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(cluster.store.revision)},
            }
            await response.write(_line("BOOKMARK", bookmark))
            last_sent = time.monotonic()
