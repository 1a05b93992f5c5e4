"""``ClusterSource`` over core: live discovery plus a session with the manager.

Discovery (watch-backed) answers the views; a ``core.session.Session`` talks
to the traffic manager through a port-forward, creates and leaves intercepts
and streams traffic from the agents. The session runs for as long as
``run()`` does (the app keeps it in a worker). When the manager cannot be
reached the views still work; the header says so and intercept actions fail
with core's error, which says what to do (``waylay install``, ``login``).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from pydantic import SecretStr

from core import credentials
from core.config import list_contexts
from core.discovery import Change, Discovery
from core.envfile import write_env
from core.errors import AgentNotArriving, ManagerMissing, NotLoggedIn, WaylayError
from core.models import ContextInfo, NamespaceInfo, WorkloadInfo
from core.preview import (
    PortForwardDial,
    PreviewDefaults,
    PreviewError,
    PreviewServer,
    PreviewTarget,
    detect_defaults,
    intercept_headers,
)
from core.protocol import InterceptInfo, InterceptSpec, TrafficEvent
from core.session import MANAGER_NAMESPACE, Connector, Session, kube_connector, kube_opener
from core.tunnels import StreamOpener
from tui.source import InterceptOutcome, ProgressFn, SessionInfo

CLUSTER_IP_PROBE = 0.5
"""How long to try the Service's clusterIP from here (a real cluster's is unreachable)."""
RETRY_MAX = 15.0
"""Longest pause between attempts to reach the manager."""
SESSION_WAIT = 20.0
"""How long ``session()`` waits for the first answer from the manager."""


def first_error(group: BaseExceptionGroup[WaylayError]) -> WaylayError:
    """The first waylay error in a (nested) exception group from a task group."""
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    assert isinstance(leaf, WaylayError)
    return leaf


async def connect_core(
    *,
    context: str | None,
    kubeconfig: str | None,
    connector: Connector | None = None,
    opener: StreamOpener | None = None,
) -> CoreSource:
    """Open ``context``; ``connector``/``opener`` default to port-forwards through it."""
    discovery = await Discovery.connect(context=context, kubeconfig=kubeconfig)
    return CoreSource(discovery, kubeconfig, connector=connector, opener=opener)


class CoreSource:
    keeps_intercepts = False
    """No user daemon yet: intercepts end (fail-open) soon after the TUI exits."""

    def __init__(
        self,
        discovery: Discovery,
        kubeconfig: str | None,
        *,
        connector: Connector | None = None,
        opener: StreamOpener | None = None,
    ) -> None:
        self.discovery = discovery
        self.kubeconfig = kubeconfig
        self.connector = connector or kube_connector(discovery.kube)
        self.opener = opener or kube_opener(discovery.kube)
        self.session_obj: Session | None = None
        self.session_error: WaylayError | None = None
        self._attempted = anyio.Event()
        self._restart = anyio.Event()
        self.previews: PreviewServer | None = None
        self._watchers = 0
        """Traffic feeds watching all traffic (the session watches while any do)."""

    # ------------------------------------------------------------- lifetime

    async def run(self) -> None:
        """Serve preview URLs and keep a session with the manager until cancelled."""
        async with anyio.create_task_group() as tg:
            dial = PortForwardDial(self.discovery.kube)
            await tg.start(dial.run)
            previews = PreviewServer(dial)
            await tg.start(previews.run)
            self.previews = previews
            await self._keep_session()

    async def _keep_session(self) -> None:
        """Reconnect with back-off whenever the manager cannot be reached."""
        backoff = 0.5
        while True:
            session = self._new_session()
            try:
                async with anyio.create_task_group() as tg:
                    await tg.start(session.run)
                    self.session_obj, self.session_error = session, None
                    self._attempted.set()
                    backoff = 0.5
                    tg.start_soon(self._follow, session)
                    await self._restart.wait()
                    self._restart = anyio.Event()
                    session.stop()
                    tg.cancel_scope.cancel()
            except* WaylayError as group:
                self.session_obj, self.session_error = None, first_error(group)
                self._attempted.set()
                self.discovery.set_intercepts([])  # tells the views the session changed
                with anyio.move_on_after(backoff):
                    await self._restart.wait()
                self._restart = anyio.Event()
                backoff = min(backoff * 2, RETRY_MAX)

    def _new_session(self) -> Session:
        return Session(
            context=self.context.name,
            connector=self.connector,
            opener=self.opener,
            api_key=credentials.get_api_key(self.context.name),
        )

    async def _follow(self, session: Session) -> None:
        """Intercept and agent events from the manager refresh the views."""
        self.discovery.set_intercepts(await session.all_intercepts())
        async for event in session.events():
            if event.kind in ("intercept", "agent", "session"):
                with contextlib.suppress(WaylayError):
                    self.discovery.set_intercepts(await session.all_intercepts())

    async def close(self, *, keep_intercepts: bool) -> None:
        session = self.session_obj
        if session is not None:
            if not keep_intercepts:
                await session.leave_all()
            session.stop()
        await self.discovery.aclose()

    # ---------------------------------------------------------------- views

    @property
    def context(self) -> ContextInfo:
        return self.discovery.context

    def contexts(self) -> list[str]:
        return [c.name for c in list_contexts(self.kubeconfig)]

    async def switch_context(self, name: str) -> CoreSource:
        fresh = await connect_core(context=name, kubeconfig=self.kubeconfig)
        await self.close(keep_intercepts=True)
        return fresh

    def _no_session(self) -> SessionInfo:
        """What the header shows while there is no manager session (and why not)."""
        return SessionInfo(
            mode="team" if isinstance(self.session_error, NotLoggedIn) else "single-user",
            identity=self.context.user,
            session_id="",
            manager_version="",
            healthy=False,
            logged_in=not isinstance(self.session_error, NotLoggedIn),
            problem=self.session_error,
        )

    async def session(self) -> SessionInfo:
        with anyio.move_on_after(SESSION_WAIT):
            await self._attempted.wait()
        session = self.session_obj
        welcome = session.welcome if session else None
        if session is None or welcome is None:
            return self._no_session()
        return SessionInfo(
            mode=welcome.mode,
            identity=welcome.identity,
            session_id=welcome.session_id,
            manager_version=welcome.manager_version,
            healthy=session.connected.is_set(),
            logged_in=welcome.mode != "team" or session.api_key is not None,
        )

    async def namespaces(self) -> list[NamespaceInfo]:
        return await self.discovery.namespaces()

    async def workloads(self, namespace: str | None) -> list[WorkloadInfo]:
        return await self.discovery.workloads(namespace)

    def changes(self) -> AsyncIterator[Change]:
        return self.discovery.changes()

    async def traffic(self, *, watch_all: bool = False) -> AsyncIterator[TrafficEvent]:
        """Ours; with ``watch_all`` also everyone's traffic through the agents (metadata)."""
        while True:
            session = await self._connected()
            self._watchers += watch_all
            try:
                await session.set_watch_all(self._watchers > 0)
                async for event in session.traffic(others=watch_all):
                    yield event
            finally:
                self._watchers -= watch_all  # counted: a new feed may start before this ends
                with anyio.CancelScope(shield=True), contextlib.suppress(WaylayError):
                    await session.set_watch_all(self._watchers > 0)

    async def intercepts(self) -> list[InterceptInfo]:
        session = self.session_obj
        if session is None or not session.connected.is_set():
            return []
        return [self._with_preview(i) for i in await session.all_intercepts()]

    def _with_preview(self, info: InterceptInfo) -> InterceptInfo:
        """Our intercepts carry the preview URL this workstation serves for them."""
        entries = self.previews.entries(info.id) if self.previews else []
        if not entries or info.spec.preview_url:
            return info
        spec = info.spec.model_copy(update={"preview_url": entries[0].url})
        return info.model_copy(update={"spec": spec})

    # ----------------------------------------------------------- operations

    async def _connected(self) -> Session:
        while self.session_obj is None:
            await self._attempted.wait()
            if self.session_obj is None:
                await anyio.sleep(0.5)
        return self.session_obj

    def _require(self) -> Session:
        if self.session_obj is None:
            if self.session_error is not None:
                raise self.session_error
            raise ManagerMissing(MANAGER_NAMESPACE, "still connecting")
        return self.session_obj

    async def preview_defaults(self, namespace: str, service: str) -> PreviewDefaults | None:
        return await detect_defaults(self.discovery.kube, namespace, service)

    async def intercept(
        self, spec: InterceptSpec, preview: PreviewTarget | None, progress: ProgressFn
    ) -> InterceptOutcome:
        session = self._require()
        info = await session.intercept(spec, progress)
        if preview is not None:
            if self.previews is None:
                raise PreviewError("The preview server is not running", "restart waylay")
            entry = self.previews.create(info.id, preview, intercept_headers(spec))
            progress(f"preview URL ready: {entry.url}")
            info = self._with_preview(info)
        self.discovery.set_intercepts(await session.all_intercepts())
        return InterceptOutcome(
            intercept=info,
            preview_url=info.spec.preview_url,
            cluster_ip=await self.reachable_cluster_ip(spec),
        )

    async def reachable_cluster_ip(self, spec: InterceptSpec) -> str | None:
        """The Service's clusterIP if a TCP connection to it from here succeeds, else None."""
        kube = self.discovery.kube

        def lookup() -> str:
            service = kube.get("v1", "Service", spec.service, spec.namespace) or {}
            return str((service.get("spec") or {}).get("clusterIP") or "")

        try:
            ip = await anyio.to_thread.run_sync(lookup, abandon_on_cancel=True)
            ipaddress.ip_address(ip)  # "None" (headless) or empty: nothing to reach
        except (WaylayError, ValueError, OSError):
            return None
        if spec.protocol != "TCP":
            return ip if ipaddress.ip_address(ip).is_loopback else None
        with anyio.move_on_after(CLUSTER_IP_PROBE):
            with contextlib.suppress(OSError):
                stream = await anyio.connect_tcp(ip, spec.service_port)
                await stream.aclose()
                return ip
        return None

    async def leave(self, name: str) -> None:
        session = self._require()
        info = await session.leave(name)
        if self.previews is not None:
            self.previews.end_intercept(info.id)
        self.discovery.set_intercepts(await session.all_intercepts())

    async def revoke(self, intercept_id: str) -> None:
        session = self._require()
        await session.request("revoke", {"id": intercept_id})
        self.discovery.set_intercepts(await session.all_intercepts())

    async def write_env_file(self, name: str, path: Path) -> Path:
        session = self._require()
        spec = session.desired.get(name)
        if spec is None:
            raise AgentNotArriving(name, "it is not one of this session's intercepts")
        agents = await session.agents(spec)
        if not agents:
            raise AgentNotArriving(spec.workload, "the manager lists no agent to read it from")
        env = {str(k): str(v) for k, v in (agents[0].get("env") or {}).items()}
        return await anyio.to_thread.run_sync(write_env, env, path)

    async def login(self, api_key: str) -> SessionInfo:
        await anyio.to_thread.run_sync(
            credentials.store_api_key, self.context.name, SecretStr(api_key)
        )
        self._attempted = anyio.Event()
        self._restart.set()
        info = await self.session()
        if self.session_error is not None:
            raise self.session_error
        return info
