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
from core.protocol import InterceptInfo, InterceptSpec, TrafficEvent
from core.session import MANAGER_NAMESPACE, Session, kube_connector, kube_opener
from tui.source import InterceptOutcome, ProgressFn, SessionInfo
from tui.wizard.plan import PreviewAnswers, PreviewDefaults

RETRY_MAX = 15.0
"""Longest pause between attempts to reach the manager."""
SESSION_WAIT = 20.0
"""How long ``session()`` waits for the first answer from the manager."""


async def connect_core(*, context: str | None, kubeconfig: str | None) -> CoreSource:
    discovery = await Discovery.connect(context=context, kubeconfig=kubeconfig)
    return CoreSource(discovery, kubeconfig)


class CoreSource:
    keeps_intercepts = False
    """No user daemon yet: intercepts end (fail-open) soon after the TUI exits."""

    def __init__(self, discovery: Discovery, kubeconfig: str | None) -> None:
        self.discovery = discovery
        self.kubeconfig = kubeconfig
        self.session_obj: Session | None = None
        self.session_error: WaylayError | None = None
        self._attempted = anyio.Event()
        self._restart = anyio.Event()

    # ------------------------------------------------------------- lifetime

    async def run(self) -> None:
        """Keep a session with the manager until cancelled, retrying with back-off."""
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
            except WaylayError as exc:
                self.session_obj, self.session_error = None, exc
                self._attempted.set()
                self.discovery.set_intercepts([])  # tells the views the session changed
                with anyio.move_on_after(backoff):
                    await self._restart.wait()
                self._restart = anyio.Event()
                backoff = min(backoff * 2, RETRY_MAX)

    def _new_session(self) -> Session:
        kube = self.discovery.kube
        return Session(
            context=self.context.name,
            connector=kube_connector(kube),
            opener=kube_opener(kube),
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

    async def session(self) -> SessionInfo:
        with anyio.move_on_after(SESSION_WAIT):
            await self._attempted.wait()
        session = self.session_obj
        welcome = session.welcome if session else None
        if session is None or welcome is None:
            return SessionInfo(
                mode="team" if isinstance(self.session_error, NotLoggedIn) else "single-user",
                identity=self.context.user,
                session_id="",
                manager_version="",
                healthy=False,
                logged_in=not isinstance(self.session_error, NotLoggedIn),
            )
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

    async def traffic(self) -> AsyncIterator[TrafficEvent]:
        while True:
            session = await self._connected()
            async for event in session.traffic():
                yield event

    async def intercepts(self) -> list[InterceptInfo]:
        session = self.session_obj
        if session is None or not session.connected.is_set():
            return []
        return await session.all_intercepts()

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
        return None

    async def intercept(
        self, spec: InterceptSpec, preview: PreviewAnswers | None, progress: ProgressFn
    ) -> InterceptOutcome:
        info = await self._require().intercept(spec, progress)
        self.discovery.set_intercepts(await self._require().all_intercepts())
        return InterceptOutcome(intercept=info, preview_url=info.spec.preview_url)

    async def leave(self, name: str) -> None:
        session = self._require()
        await session.leave(name)
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
