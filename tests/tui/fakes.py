"""An in-memory ``ClusterSource`` with fixed data, for widget and snapshot tests.

It holds core's own models (``WorkloadInfo``, ``InterceptInfo``, ...) and keeps
them consistent as the TUI acts on it: an intercept appears on its workload and
in the intercepts list, leaving removes it, changes are announced on
``changes()`` and traffic is pushed with ``emit``. Timestamps are fixed so
snapshots are stable. Flows against the real cluster use the sandbox instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from core.errors import WaylayError
from core.models import ContextInfo, NamespaceInfo, ServicePortInfo, ServiceRef, WorkloadInfo
from core.preview import PreviewDefaults, PreviewTarget
from core.protocol import InterceptInfo, InterceptSpec, PathRule, TrafficEvent
from tui.source import InterceptOutcome, ProgressFn, SessionInfo

T0 = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
CONTEXT = ContextInfo(
    name="waylay-sandbox",
    cluster="sandbox",
    user="developer",
    namespace="shop",
    server="https://127.0.0.1:6443",
)


def port(name: str, number: int, target: int | str, protocol: str = "TCP") -> ServicePortInfo:
    return ServicePortInfo(name=name, port=number, target_port=target, protocol=protocol)  # type: ignore[arg-type]


def demo_workloads() -> list[WorkloadInfo]:
    return [
        WorkloadInfo(
            namespace="shop",
            name="orders",
            kind="Deployment",
            replicas=3,
            ready=3,
            services=[ServiceRef(name="orders", ports=[port("http", 80, "http")])],
            agent_state="ready",
        ),
        WorkloadInfo(
            namespace="shop",
            name="catalog",
            kind="Deployment",
            replicas=2,
            ready=2,
            services=[
                ServiceRef(
                    name="catalog", ports=[port("http", 80, 8080), port("grpc", 9090, 9090)]
                ),
                ServiceRef(name="catalog-admin", ports=[port("admin", 8081, 8081)]),
            ],
        ),
        WorkloadInfo(
            namespace="shop",
            name="ledger",
            kind="StatefulSet",
            replicas=2,
            ready=1,
            services=[ServiceRef(name="ledger", ports=[port("", 80, 8080)])],
            agent_state="partial",
        ),
        WorkloadInfo(
            namespace="billing",
            name="legacy-billing",
            kind="ReplicaSet",
            replicas=1,
            ready=1,
            services=[ServiceRef(name="legacy-billing", ports=[port("", 8080, 8080)])],
        ),
        WorkloadInfo(
            namespace="billing",
            name="batch",
            kind="Deployment",
            replicas=1,
            ready=1,
        ),
        WorkloadInfo(
            namespace="metrics",
            name="statsd",
            kind="Deployment",
            replicas=1,
            ready=1,
            services=[ServiceRef(name="statsd", ports=[port("udp", 8125, 8125, "UDP")])],
        ),
    ]


def intercept(
    name: str,
    workload: str,
    owner: str,
    session: str,
    *,
    headers: dict[str, str] | None = None,
    local_port: int = 8080,
    namespace: str = "shop",
    preview_url: str | None = None,
) -> InterceptInfo:
    spec = InterceptSpec(
        name=name,
        namespace=namespace,
        workload=workload,
        service=workload,
        service_port=80,
        service_port_name="http",
        mechanism="http" if headers else "tcp",
        headers=headers or {},
        path=PathRule(kind="prefix", value="/") if headers else None,
        local_port=local_port,
        preview_url=preview_url,
    )
    return InterceptInfo(
        id=f"{session}:{name}", spec=spec, session_id=session, owner=owner, created=T0
    )


def traffic(n: int, *, intercept_id: str = "s-alice:orders-shop") -> list[TrafficEvent]:
    """``n`` requests, alternating between routed-to-you and unmatched."""
    events = []
    for i in range(n):
        mine = i % 2 == 0
        events.append(
            TrafficEvent(
                time=T0 + timedelta(milliseconds=137 * i),
                pod=f"orders-7d9f-{i % 3}",
                intercept=intercept_id if mine else "",
                client="s-alice" if mine else "",
                protocol="http",
                method="GET" if i % 3 else "POST",
                path=f"/orders/{1000 + i}",
                status=200 if i % 7 else 503,
                bytes_in=120 + i,
                bytes_out=2048 + 10 * i,
                duration_ms=3.0 + i % 11,
                routed="workstation" if mine else "app",
                reason="" if mine else "header x-waylay-intercept-id missing",
                headers={
                    "x-waylay-intercept-id": "s-alice:orders-shop",
                    "authorization": "<redacted>",
                    "user-agent": "curl/8.5",
                }
                if mine
                else {"user-agent": "curl/8.5", "cookie": "<redacted>"},
            )
        )
    return events


class FakeSource:
    """Implements ``tui.source.ClusterSource`` over in-memory models."""

    def __init__(
        self,
        *,
        mode: str = "team",
        identity: str = "alice",
        session_id: str = "s-alice",
        workloads: list[WorkloadInfo] | None = None,
        intercepts: list[InterceptInfo] | None = None,
    ) -> None:
        self._context = CONTEXT
        self.info = SessionInfo(
            mode=mode,
            identity=identity,
            session_id=session_id,  # type: ignore[arg-type]
            manager_version="0.1.0",
            healthy=True,
        )
        self._workloads = workloads if workloads is not None else demo_workloads()
        self._intercepts = list(intercepts or [])
        self._changes: list[MemoryObjectSendStream[object]] = []
        self._traffic: list[MemoryObjectSendStream[TrafficEvent]] = []
        self.calls: list[tuple[str, object]] = []
        self.fail_next: WaylayError | None = None
        self.closed: bool | None = None
        self.preview = PreviewDefaults(
            host="ingress-nginx.ingress",
            port=443,
            tls=True,
            hostname="shop.example.test",
            source="controller Service ingress-nginx.ingress, Ingress shop/shop",
        )

    keeps_intercepts = True

    # -- ClusterSource
    async def run(self) -> None:
        await anyio.sleep_forever()

    @property
    def context(self) -> ContextInfo:
        return self._context

    def contexts(self) -> list[str]:
        return ["waylay-sandbox", "waylay-sandbox-admin"]

    async def switch_context(self, name: str) -> FakeSource:
        self.calls.append(("switch_context", name))
        self._context = self._context.model_copy(update={"name": name})
        return self

    async def session(self) -> SessionInfo:
        return self.info

    async def namespaces(self) -> list[NamespaceInfo]:
        counts: dict[str, int] = {}
        for w in self._workloads:
            counts[w.namespace] = counts.get(w.namespace, 0) + 1
        return [NamespaceInfo(name=n, workload_count=c) for n, c in sorted(counts.items())]

    async def workloads(self, namespace: str | None) -> list[WorkloadInfo]:
        by_workload: dict[tuple[str, str], list[InterceptInfo]] = {}
        for i in self._intercepts:
            by_workload.setdefault((i.spec.namespace, i.spec.workload), []).append(i)
        return [
            w.model_copy(update={"intercepts": by_workload.get((w.namespace, w.name), [])})
            for w in self._workloads
            if namespace is None or w.namespace == namespace
        ]

    async def changes(self) -> AsyncIterator[object]:
        send, receive = anyio.create_memory_object_stream[object](100)
        self._changes.append(send)
        async with receive:
            async for change in receive:
                yield change

    async def traffic(self, *, watch_all: bool = False) -> AsyncIterator[TrafficEvent]:
        send, receive = anyio.create_memory_object_stream[TrafficEvent](10_000)
        self._traffic.append(send)
        async with receive:
            async for event in receive:
                yield event

    async def intercepts(self) -> list[InterceptInfo]:
        return list(self._intercepts)

    async def preview_defaults(self, namespace: str, service: str) -> PreviewDefaults | None:
        return self.preview

    async def intercept(
        self, spec: InterceptSpec, preview: PreviewTarget | None, progress: ProgressFn
    ) -> InterceptOutcome:
        self.calls.append(("intercept", (spec, preview)))
        self._raise()
        progress("asking the traffic manager to prepare the intercept")
        progress("agent ready in 3/3 pods")
        url = f"https://p-3f9a.{preview.hostname}" if preview else None
        info = InterceptInfo(
            id=f"{self.info.session_id}:{spec.name}",
            spec=spec.model_copy(update={"preview_url": url}),
            session_id=self.info.session_id,
            owner=self.info.identity,
            created=T0,
        )
        self._intercepts.append(info)
        self.changed()
        return InterceptOutcome(intercept=info, preview_url=url)

    async def leave(self, name: str) -> None:
        self.calls.append(("leave", name))
        self._raise()
        self._intercepts = [
            i
            for i in self._intercepts
            if not (i.spec.name == name and i.session_id == self.info.session_id)
        ]
        self.changed()

    async def revoke(self, intercept_id: str) -> None:
        self.calls.append(("revoke", intercept_id))
        self._raise()
        self._intercepts = [i for i in self._intercepts if i.id != intercept_id]
        self.changed()

    async def write_env_file(self, name: str, path: Path) -> Path:
        self.calls.append(("env", (name, path)))
        self._raise()
        return path

    async def login(self, api_key: str) -> SessionInfo:
        self.calls.append(("login", api_key))
        self._raise()
        self.info = SessionInfo(
            mode="team",
            identity="alice",
            session_id=self.info.session_id,
            manager_version="0.1.0",
            healthy=True,
            logged_in=True,
        )
        return self.info

    async def close(self, *, keep_intercepts: bool) -> None:
        self.closed = keep_intercepts

    # -- test controls
    def _raise(self) -> None:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error

    def changed(self) -> None:
        for send in self._changes:
            send.send_nowait("changed")

    def emit(self, events: list[TrafficEvent]) -> None:
        for send in self._traffic:
            for event in events:
                send.send_nowait(event)

    @property
    def streaming(self) -> bool:
        return bool(self._traffic) and bool(self._changes)
