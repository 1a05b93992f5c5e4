"""A session with one context's traffic manager, and the intercepts it holds.

The session keeps the desired state (our intercept specs) on the
workstation. It connects to the manager's client API (through a local
port-forward in production), creates intercepts (prepare -> create), and
keeps a tunnel to every agent pod of the intercepted workloads
(``core.tunnels``). When the connection breaks it reconnects with back-off
and resumes: the ``ClientHello`` carries the session id and every intercept,
so a restarted manager rebuilds its registry from us. ``leave`` removes an
intercept at once.

Intercept ids are ``<session id>:<name>``; the tunnel resolver sends the
traffic of each to its ``local_address:local_port``.

Watching all traffic (``set_watch_all``) opens a second, receive-only tunnel
to every agent the manager lists, under the session id ``<id>/watch`` and
with ``watch_all``: the agent sends it the metadata (no headers) of everyone
else's traffic, with why unmatched requests missed. Our own intercepts'
tunnels are not touched, so switching never disturbs intercepted traffic.
``traffic(others=True)`` subscribers get those events too.
"""

from __future__ import annotations

import contextlib
import getpass
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import anyio.abc
from pydantic import SecretStr

from core.broadcast import Broadcast
from core.errors import AgentNotArriving, ManagerError, ManagerMissing, WaylayError
from core.forward import LocalForward, open_portforward
from core.kube import Kube
from core.manager_client import ManagerClient, single_error
from core.protocol import (
    ClientHello,
    ClientWelcome,
    Event,
    InterceptInfo,
    InterceptSpec,
    TrafficEvent,
)
from core.tunnel import LocalTarget
from core.tunnels import AgentRef, StreamOpener, TunnelSet

__all__ = [
    "MANAGER_CLIENT_PORT",
    "MANAGER_DEPLOYMENT",
    "MANAGER_NAMESPACE",
    "Connector",
    "Session",
    "kube_connector",
    "kube_opener",
]

MANAGER_NAMESPACE = "waylay"
MANAGER_DEPLOYMENT = "waylay-manager"
MANAGER_CLIENT_PORT = 8082
PREPARE_TIMEOUT = 180.0
TUNNEL_TIMEOUT = 30.0

Connector = Callable[[], AbstractAsyncContextManager[str]]
"""Opens a way to the manager's client API; yields its WebSocket URL."""
Progress = Callable[[str], None]


def watcher_id(session_id: str) -> str:
    """The session id a watcher tunnel presents (no ``:``, so it owns no intercept)."""
    return f"{session_id}/watch"


def client_name() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "someone"
    return f"{user}@{socket.gethostname()}"


# ----------------------------------------------------------- production seams


async def find_manager_pod(kube: Kube, namespace: str = MANAGER_NAMESPACE) -> tuple[str, str]:
    """A running, ready manager pod; ManagerMissing says why there is none."""

    def locate() -> tuple[str, str]:
        deploy = kube.get("apps/v1", "Deployment", MANAGER_DEPLOYMENT, namespace)
        if deploy is None:
            raise ManagerMissing(namespace, f"no Deployment {MANAGER_DEPLOYMENT!r}")
        labels = ((deploy.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        pods, _ = kube.list("v1", "Pod", namespace, label_selector=selector)
        for pod in pods:
            status = pod.get("status") or {}
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or []
            )
            if (
                status.get("phase") == "Running"
                and ready
                and not pod["metadata"].get("deletionTimestamp")
            ):
                return pod["metadata"]["name"], namespace
        raise ManagerMissing(namespace, f"{MANAGER_DEPLOYMENT} has no ready pod yet")

    return await anyio.to_thread.run_sync(locate, abandon_on_cancel=True)


def kube_connector(kube: Kube, namespace: str = MANAGER_NAMESPACE) -> Connector:
    """Reach the manager's client API through a local port-forward to its pod."""

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[str]:
        await find_manager_pod(kube, namespace)  # fail early with a clear reason
        forward = LocalForward(kube, lambda: find_manager_pod(kube, namespace), MANAGER_CLIENT_PORT)
        async with anyio.create_task_group() as tg:
            port = await tg.start(forward.run)
            try:
                yield f"http://127.0.0.1:{port}/v1/client"
            finally:
                tg.cancel_scope.cancel()

    return connect


def kube_opener(kube: Kube) -> StreamOpener:
    async def opener(pod: str, namespace: str, port: int) -> anyio.abc.ByteStream:
        return await open_portforward(kube, pod, namespace, port)

    return opener


# -------------------------------------------------------------------- session


def _parse_info(data: dict[str, Any]) -> InterceptInfo:
    """An InterceptInfo from a manager answer (which may add fields such as age)."""
    return InterceptInfo.model_validate(
        {k: v for k, v in data.items() if k in InterceptInfo.model_fields}
    )


class Session:
    """Use ``await tg.start(session.run)``; it returns once the manager welcomed us."""

    def __init__(
        self,
        *,
        context: str,
        connector: Connector,
        opener: StreamOpener,
        api_key: SecretStr | None = None,
        name: str | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        self.context = context
        self.connector = connector
        self.opener = opener
        self.api_key = api_key
        self.name = name or client_name()
        self.max_backoff = max_backoff
        self.desired: dict[str, InterceptSpec] = {}
        self.infos: dict[str, InterceptInfo] = {}
        """Our intercepts as the manager last described them, by name."""
        self.welcome: ClientWelcome | None = None
        self.session_id: str | None = None
        self.connected = anyio.Event()
        self.last_error: WaylayError | None = None
        self._client: ManagerClient | None = None
        self._tunnels: TunnelSet | None = None
        self._traffic: Broadcast[TrafficEvent] = Broadcast(1024)
        """Tagged with whether the subscriber also wants others' traffic."""
        self._watch_all = False
        self._watch: TunnelSet | None = None
        self._changes: Broadcast[Event] = Broadcast(512)
        self._stopping = False
        self._started = False
        self._tg: anyio.abc.TaskGroup | None = None

    # ---------------------------------------------------------------- running

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[Session] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await self._run(task_status)
        except BaseExceptionGroup as group:
            raise single_error(group)

    async def _run(self, task_status: anyio.abc.TaskStatus[Session]) -> None:
        backoff = 0.3
        async with anyio.create_task_group() as tg:
            while not self._stopping:
                try:
                    await self._connect_once(tg, None if self._started else task_status)
                    backoff = 0.3
                except WaylayError as exc:
                    if not self._started:
                        raise
                    self.last_error = exc
                finally:
                    self._client = None
                    self.connected = anyio.Event()
                if self._stopping:
                    break
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            if self._tunnels is not None:
                self._tunnels.close()
            if self._watch is not None:
                self._watch.close()
            tg.cancel_scope.cancel()

    async def _connect_once(
        self, tg: anyio.abc.TaskGroup, task_status: anyio.abc.TaskStatus[Session] | None
    ) -> None:
        """One connection, until it ends; task groups' wrapping is undone for callers."""
        try:
            async with (
                self.connector() as url,
                ManagerClient.open(url, self._hello(), context=self.context) as client,
            ):
                await self._on_connected(tg, client)
                if task_status is not None:
                    task_status.started(self)
                    self._started = True
                async with anyio.create_task_group() as inner:
                    inner.start_soon(self._follow_events, client)
                    await client.closed.wait()
                    inner.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise single_error(group)

    def _hello(self) -> ClientHello:
        return ClientHello(
            client=self.name,
            api_key=self.api_key.get_secret_value() if self.api_key else None,
            session_id=self.session_id,
            intercepts=list(self.desired.values()),
        )

    async def _on_connected(self, tg: anyio.abc.TaskGroup, client: ManagerClient) -> None:
        self._client = client
        self.welcome = client.welcome
        if self._tunnels is None or self.session_id != client.session_id:
            if self._tunnels is not None:
                self._tunnels.close()
            self._tunnels = TunnelSet(
                tg,
                self.opener,
                session_id=client.session_id,
                resolve=self._resolve,
                on_traffic=self._publish_traffic,
            )
        if self._watch is not None and self._watch.session_id != watcher_id(client.session_id):
            self._watch.close()
            self._watch = None
        self._tg = tg
        self.session_id = client.session_id
        self.last_error = None
        self.connected.set()
        await self._refresh()

    async def _follow_events(self, client: ManagerClient) -> None:
        async for event in client.events():
            if event.kind == "intercept":
                self._on_intercept_event(event.data)
            if event.kind in ("agent", "intercept"):
                with contextlib.suppress(ManagerError):
                    await self._refresh_agents()
            self._changes.publish(event)

    def _on_intercept_event(self, data: dict[str, Any]) -> None:
        iid = str(data.get("id", ""))
        sid, _, name = iid.partition(":")
        if sid != self.session_id or name not in self.desired:
            return
        if data.get("state") in ("removed", "failed"):
            # revoked by an admin, or refused on resume: it is no longer ours
            self.desired.pop(name, None)
            self.infos.pop(name, None)
            return
        with contextlib.suppress(ValueError):
            self.infos[name] = _parse_info(data)

    async def _refresh(self) -> None:
        if self.desired:
            mine = [i for i in await self.all_intercepts() if i.session_id == self.session_id]
            self.infos = {i.spec.name: i for i in mine if i.spec.name in self.desired}
        await self._refresh_agents()

    async def _refresh_agents(self) -> None:
        client = self._client
        if client is None or self._tunnels is None:
            return
        workloads = {(s.namespace, s.workload_kind, s.workload) for s in self.desired.values()}
        agents: set[AgentRef] = set()
        for ns, kind, workload in workloads:
            agents |= await self._agents_of(client, ns, kind, workload)
        self._tunnels.update(agents)
        await self._refresh_watch(client)

    async def _refresh_watch(self, client: ManagerClient) -> None:
        """While watching all: a watcher tunnel to every registered agent."""
        if not self._watch_all or self._tg is None or self.session_id is None:
            if self._watch is not None:
                self._watch.close()
                self._watch = None
            return
        if self._watch is None:
            self._watch = TunnelSet(
                self._tg,
                self.opener,
                session_id=watcher_id(self.session_id),
                resolve=lambda _intercept: None,  # a watcher never carries traffic
                on_traffic=self._publish_others,
                watch_all=True,
            )
        self._watch.update(await self._agents_of(client, None, None, None))

    async def set_watch_all(self, on: bool) -> None:
        """Also receive everyone's traffic through the agents (metadata only), or stop."""
        self._watch_all = on
        client = self._client
        if client is not None:
            await self._refresh_watch(client)
        elif not on and self._watch is not None:
            self._watch.close()
            self._watch = None

    def watchers_connected(self) -> int:
        """How many agents' watcher tunnels are up (0 when not watching)."""
        return len(self._watch.connected) if self._watch is not None else 0

    def is_mine(self, event: TrafficEvent) -> bool:
        """Was this event one of our own intercepts' (sent with its headers)?"""
        owner = event.intercept.partition(":")[0] if event.intercept else ""
        return bool(owner) and owner == self.session_id

    @staticmethod
    async def _agents_of(
        client: ManagerClient, namespace: str | None, kind: str | None, workload: str | None
    ) -> set[AgentRef]:
        """Registered agents of a workload; all of them when nothing is named."""
        query = {"namespace": namespace, "workload": workload, "workload_kind": kind}
        found = await client.request("agents", {k: v for k, v in query.items() if v is not None})
        return {
            AgentRef(str(a["pod"]), str(a["namespace"]), int(a["tunnel_port"]))
            for a in found
            if a.get("state", "registered") == "registered"
        }

    def _require_client(self) -> ManagerClient:
        if self._client is None:
            raise ManagerMissing(
                MANAGER_NAMESPACE,
                f"not connected{f': {self.last_error.title}' if self.last_error else ''}",
            )
        return self._client

    def _resolve(self, intercept_id: str) -> LocalTarget | None:
        sid, _, name = intercept_id.partition(":")
        spec = self.desired.get(name)
        if sid != self.session_id or spec is None:
            return None
        return LocalTarget(spec.local_address, spec.local_port)

    def _publish_traffic(self, event: TrafficEvent) -> None:
        """From our intercepts' tunnels: every subscriber wants these."""
        self._traffic.publish(event)

    def _publish_others(self, event: TrafficEvent) -> None:
        """From the watcher tunnels: only for ``traffic(others=True)``; ours come with headers
        through our own tunnels, so the watcher's copies of them are dropped."""
        if self.is_mine(event):
            return
        self._traffic.publish(event, to=bool)

    # ------------------------------------------------------------- operations

    async def intercept(
        self,
        spec: InterceptSpec,
        progress: Progress | None = None,
        *,
        tunnel_timeout: float = TUNNEL_TIMEOUT,
    ) -> InterceptInfo:
        """Prepare (agents arrive), create, and wait until every agent's tunnel is up."""
        client = self._require_client()
        say = progress or (lambda _msg: None)
        params = {"spec": spec.model_dump(mode="json")}
        say(f"preparing {spec.workload_kind} {spec.namespace}/{spec.workload}")
        await client.request(
            "prepare",
            params,
            timeout=PREPARE_TIMEOUT,
            progress=lambda data: say(str(data.get("message") or data.get("step") or data)),
        )
        info = _parse_info(await client.request("create", params))
        self.desired[spec.name] = spec
        self.infos[spec.name] = info
        await self._refresh_agents()
        assert self._tunnels is not None
        agents = await self._agents_of(client, spec.namespace, spec.workload_kind, spec.workload)
        if not agents:
            raise AgentNotArriving(spec.workload, "the manager lists no agent for this workload")
        say(f"opening tunnels to {len(agents)} agent pod(s)")
        if not await self._tunnels.wait_connected(agents, tunnel_timeout):
            errors = "; ".join(f"{a.pod}: {e}" for a, e in self._tunnels.errors.items())
            raise AgentNotArriving(spec.workload, f"tunnels did not open: {errors or 'timeout'}")
        return info

    async def leave(self, name: str) -> InterceptInfo:
        client = self._require_client()
        info = _parse_info(await client.request("remove", {"name": name}))
        self.desired.pop(name, None)
        self.infos.pop(name, None)
        await self._refresh_agents()
        return info

    async def leave_all(self) -> None:
        for name in list(self.desired):
            with contextlib.suppress(WaylayError):
                await self.leave(name)

    async def all_intercepts(self) -> list[InterceptInfo]:
        """Everyone's intercepts (the manager's registry)."""
        items = await self._require_client().request("list")
        return [_parse_info(i) for i in items]

    async def agents(self, spec: InterceptSpec) -> list[dict[str, Any]]:
        client = self._require_client()
        found: list[dict[str, Any]] = await client.request(
            "agents",
            {
                "namespace": spec.namespace,
                "workload": spec.workload,
                "workload_kind": spec.workload_kind,
            },
        )
        return found

    async def request(self, op: str, params: dict[str, Any] | None = None) -> Any:
        return await self._require_client().request(op, params)

    def stop(self) -> None:
        """End ``run`` (intercepts are left to expire unless ``leave_all`` ran first)."""
        self._stopping = True
        if self._client is not None:
            self._client._finish("session stopped")

    # ----------------------------------------------------------------- feeds

    async def traffic(self, *, others: bool = False) -> AsyncIterator[TrafficEvent]:
        """Our intercepts' traffic; with ``others`` also everyone else's (metadata only),
        which flows while ``set_watch_all(True)`` is in effect."""
        async for event in self._traffic.subscribe(others):
            yield event

    async def events(self) -> AsyncIterator[Event]:
        async for event in self._changes.subscribe():
            yield event
