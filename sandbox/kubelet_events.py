"""Events about pods, as ``kubectl describe pod`` shows them.

``EventRecorder.emit`` never blocks: events are written by one background task.
A repeat of the same event (same object, container, reason and message) bumps
``count`` and ``lastTimestamp`` of the first one instead of adding another,
as the real event recorder aggregates them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sandbox.errors import ApiError
from sandbox.kubelet_api import ClusterAPI, Obj

__all__ = ["EventRecorder", "now_rfc3339"]

log = logging.getLogger(__name__)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _precise_now() -> str:
    """Event times with microseconds (Go's RFC 3339 parser accepts them), so
    ``kubectl describe``, which sorts events by time, keeps them in order."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class _Pending:
    obj: Obj
    type: str
    reason: str
    message: str
    field_path: str
    component: str


class EventRecorder:
    """Writes core/v1 Events through the cluster."""

    def __init__(self, cluster: ClusterAPI, *, host: str) -> None:
        self._cluster = cluster
        self._host = host
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._seen: dict[tuple[str, str, str, str], tuple[str, str, int]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._drain(), name="event recorder")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def flush(self) -> None:
        """Wait until every emitted event is written (tests, shutdown)."""
        await self._queue.join()

    def forget(self, uid: str) -> None:
        """Drop the aggregation memory of a removed object."""
        for key in [key for key in self._seen if key[0] == uid]:
            del self._seen[key]

    def emit(
        self,
        obj: Obj,
        type_: str,
        reason: str,
        message: str,
        *,
        field_path: str = "",
        component: str = "kubelet",
    ) -> None:
        self._queue.put_nowait(_Pending(obj, type_, reason, message, field_path, component))

    async def _drain(self) -> None:
        while True:
            pending = await self._queue.get()
            try:
                await self._write(pending)
            except ApiError as exc:  # a gone namespace, a terminating one: not fatal
                log.debug("event %s not recorded: %s", pending.reason, exc)
            except Exception:  # pragma: no cover - keep recording later events
                log.exception("event %s not recorded", pending.reason)
            finally:
                self._queue.task_done()

    async def _write(self, pending: _Pending) -> None:
        meta = pending.obj.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        key = (str(meta.get("uid", "")), pending.field_path, pending.reason, pending.message)
        now = _precise_now()
        seen = self._seen.get(key)
        if seen is not None:
            event_namespace, name, count = seen
            existing = self._cluster.store.get("events", event_namespace, name)
            if existing is not None:
                existing["count"] = count + 1
                existing["lastTimestamp"] = now
                with contextlib.suppress(ApiError):
                    await self._cluster.update("events", existing)
                    self._seen[key] = (event_namespace, name, count + 1)
                    return
        name = f"{meta.get('name', 'object')}.{uuid.uuid4().hex[:16]}"
        involved: dict[str, Any] = {
            "kind": pending.obj.get("kind", "Pod"),
            "apiVersion": pending.obj.get("apiVersion", "v1"),
            "namespace": namespace,
            "name": meta.get("name", ""),
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        if pending.field_path:
            involved["fieldPath"] = pending.field_path
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": involved,
            "reason": pending.reason,
            "message": pending.message,
            "type": pending.type,
            "source": {"component": pending.component, "host": self._host},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": pending.component,
            "reportingInstance": self._host,
        }
        await self._cluster.create("events", event, namespace=namespace)
        self._seen[key] = (namespace, name, 1)
