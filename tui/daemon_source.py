"""``ClusterSource`` over the per-user daemon: the TUI and the CLI share intercepts.

Views come from live discovery, as in ``CoreSource``; everything about the
manager goes through ``core.daemon`` (started on demand): the session, the
intercepts (so `waylay leave` ends one the TUI made, and the TUI lists what
`waylay intercept` made), preview URLs, env, and the traffic and intercept
pushes. Quitting may keep the intercepts running in the daemon. Revoking,
which the daemon has no verb for, asks the manager directly with our key.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import anyio

from core import config, credentials
from core.broadcast import Broadcast
from core.daemon_client import DaemonClient
from core.daemon_protocol import socket_path
from core.discovery import Discovery
from core.envfile import write_env
from core.errors import DaemonUnavailable, WaylayError
from core.manager_client import ManagerClient
from core.preview import PreviewTarget
from core.protocol import AUTO_HEADER, ClientHello, InterceptInfo, InterceptSpec, TrafficEvent
from core.session import Connector, client_name
from tui.core_source import SESSION_WAIT, CoreSource
from tui.source import InterceptOutcome, ProgressFn, SessionInfo

RETRY_MAX = 15.0


async def connect_daemon(
    *,
    context: str | None,
    kubeconfig: str | None,
    socket: Path | None = None,
    connector: Connector | None = None,
) -> DaemonSource:
    """``connector`` reaches the manager for revoking (default: a port-forward)."""
    name, joined = await anyio.to_thread.run_sync(config.resolve, context, kubeconfig)
    discovery = await Discovery.connect(context=name, kubeconfig=joined)
    return DaemonSource(discovery, joined, socket=socket, connector=connector)


def intercept_request(spec: InterceptSpec, preview: PreviewTarget | None) -> dict[str, Any]:
    """The ``waylay intercept`` flags that make ``spec`` (what the daemon takes)."""
    headers = [
        "auto" if name == AUTO_HEADER else f"{name}={value}" for name, value in spec.headers.items()
    ]
    request: dict[str, Any] = {
        "name": spec.workload,
        "namespace": spec.namespace,
        "service": spec.service,
        "port": f"{spec.local_port}:{spec.service_port_name or spec.service_port}",
        "address": spec.local_address,
        "mechanism": spec.mechanism,
        "http_header": headers,
        "preview_url": preview is not None,
    }
    if spec.path is not None:
        request[f"http_path_{spec.path.kind}"] = spec.path.value
    if preview is not None:
        request.update(
            ingress_host=preview.host,
            ingress_port=preview.port,
            ingress_tls=preview.tls,
            ingress_l5=preview.hostname or None,
        )
    return request


def traffic_event(data: dict[str, Any]) -> TrafficEvent | None:
    """A daemon traffic push as an event (None if malformed)."""
    fields = {k: v for k, v in data.items() if k not in ("context", "mine")}
    try:
        return TrafficEvent.model_validate(fields)
    except ValueError:
        return None


class DaemonSource(CoreSource):
    keeps_intercepts = True
    """The daemon holds them after the TUI exits."""

    def __init__(
        self,
        discovery: Discovery,
        kubeconfig: str,
        *,
        socket: Path | None,
        connector: Connector | None = None,
    ) -> None:
        super().__init__(discovery, kubeconfig, connector=connector)
        self.socket = socket
        self.client: DaemonClient | None = None
        self._feeds: Broadcast[TrafficEvent] = Broadcast(1024)
        self._mine: set[str] = set()
        self.attempts = 0
        """How many times ``run()`` has tried to attach (each retry replaces the client)."""

    def _target(self, **extra: Any) -> dict[str, Any]:
        return {"context": self.context.name, "kubeconfig": self.kubeconfig, **extra}

    # ------------------------------------------------------------- lifetime

    async def run(self) -> None:
        """Stay attached to the daemon (reconnecting) and relay its pushes."""
        backoff = 0.5
        while True:
            try:
                self.client = await DaemonClient.connect(self.socket)
                await self.client.call("intercepts", self._target(all=True))
                self.session_error = None
                self._attempted.set()
                await self._refresh()
                backoff = 0.5
                await self._relay()
            except WaylayError as exc:
                self.session_error = exc
                self._attempted.set()
                self.discovery.set_intercepts([])
            if self.client is not None:
                await self.client.aclose()
                self.client = None
            self.attempts += 1
            with anyio.move_on_after(backoff):
                await self._restart.wait()
            self._restart = anyio.Event()
            backoff = min(backoff * 2, RETRY_MAX)

    async def _relay(self) -> None:
        async with await DaemonClient.connect(self.socket, start=False) as feed:
            async for push in await feed.subscribe():
                if push.data.get("context") not in (None, self.context.name):
                    continue
                if push.topic == "traffic":
                    event = traffic_event(push.data)
                    if event is not None:
                        self._fan_out(event)
                else:
                    with contextlib.suppress(WaylayError):
                        await self._refresh()

    def _fan_out(self, event: TrafficEvent) -> None:
        self._feeds.publish(event)

    async def _refresh(self) -> None:
        self.discovery.set_intercepts(await self.intercepts())

    async def close(self, *, keep_intercepts: bool) -> None:
        client = self.client
        if client is not None and not keep_intercepts:
            for name in sorted(self._mine):
                with contextlib.suppress(WaylayError):
                    await client.call("leave", {"name": name, "context": self.context.name})
        if client is not None:
            await client.aclose()
        await self.discovery.aclose()

    # ---------------------------------------------------------------- views

    def _require_client(self) -> DaemonClient:
        if self.client is None:
            if self.session_error is not None:
                raise self.session_error
            raise DaemonUnavailable(str(self.socket or socket_path()), "still connecting")
        return self.client

    async def session(self) -> SessionInfo:
        with anyio.move_on_after(SESSION_WAIT):
            await self._attempted.wait()
        if self.client is None or self.session_error is not None:
            return self._no_session()
        try:
            status = await self.client.call("status")
        except DaemonUnavailable as exc:
            return SessionInfo("single-user", self.context.user, "", "", healthy=False, problem=exc)
        for s in status.get("sessions", []):
            if s.get("context") == self.context.name and s.get("session_id"):
                mode: Literal["single-user", "team"] = (
                    "team" if s.get("mode") == "team" else "single-user"
                )
                return SessionInfo(
                    mode=mode,
                    identity=s.get("identity") or self.context.user,
                    session_id=s["session_id"],
                    manager_version=s.get("manager_version") or "",
                    healthy=bool(s.get("connected")),
                    logged_in=mode != "team"
                    or credentials.get_api_key(self.context.name) is not None,
                )
        return SessionInfo("single-user", self.context.user, "", "", healthy=False)

    async def intercepts(self) -> list[InterceptInfo]:
        client = self.client
        if client is None or self.session_error is not None:
            return []
        try:
            everyone = await client.call("intercepts", self._target(all=True))
            mine = await client.call("intercepts", {})
        except DaemonUnavailable:
            if client is not self.client:  # run() replaced it: the next change reloads
                return []
            raise
        infos = {i["id"]: InterceptInfo.model_validate(i) for i in everyone}
        for raw in mine:  # ours carry the preview URL the daemon serves
            info = InterceptInfo.model_validate(raw)
            if info.id in infos:
                infos[info.id] = info
        self._mine = {i.spec.name for i in infos.values() if i.id in {m["id"] for m in mine}}
        return list(infos.values())

    async def traffic(self, *, watch_all: bool = False) -> AsyncIterator[TrafficEvent]:
        """Ours from the shared feed; with ``watch_all`` a subscription of its own that
        also carries everyone's traffic through the agents (metadata only)."""
        if watch_all:
            async for event in self._watch_all():
                yield event
            return
        async for event in self._feeds.subscribe():
            yield event

    async def _watch_all(self) -> AsyncIterator[TrafficEvent]:
        backoff = 0.5
        while True:
            with contextlib.suppress(WaylayError, OSError):
                async with await DaemonClient.connect(self.socket, start=False) as feed:
                    async for push in await feed.subscribe(watch_all=True):
                        backoff = 0.5
                        if push.topic != "traffic" or push.data.get("context") not in (
                            None,
                            self.context.name,
                        ):
                            continue
                        event = traffic_event(push.data)
                        if event is not None:
                            yield event
            await anyio.sleep(backoff)  # the daemon went away: run() restarts it
            backoff = min(backoff * 2, RETRY_MAX)

    # ----------------------------------------------------------- operations

    async def intercept(
        self, spec: InterceptSpec, preview: PreviewTarget | None, progress: ProgressFn
    ) -> InterceptOutcome:
        self._require_client()
        # its own connection: a long prepare must not hold up the views' calls
        async with await DaemonClient.connect(self.socket, start=False) as client:
            result = await client.call(
                "intercept",
                self._target(request=intercept_request(spec, preview)),
                progress=progress,
            )
            warnings = tuple(f"{w.title}. {w.hint}".strip() for w in client.last_warnings)
        info = InterceptInfo.model_validate(result["intercept"])
        await self._refresh()
        cluster_ip = await self.reachable_cluster_ip(info.spec)
        return InterceptOutcome(info, info.spec.preview_url, warnings, cluster_ip)

    async def leave(self, name: str) -> None:
        client = self._require_client()
        await client.call("leave", {"name": name, "context": self.context.name})
        await self._refresh()

    async def revoke(self, intercept_id: str) -> None:
        key = credentials.get_api_key(self.context.name)
        hello = ClientHello(client=client_name(), api_key=key.get_secret_value() if key else None)
        async with (
            self.connector() as url,
            ManagerClient.open(url, hello, context=self.context.name) as manager,
        ):
            await manager.request("revoke", {"id": intercept_id})
        await self._refresh()

    async def write_env_file(self, name: str, path: Path) -> Path:
        client = self._require_client()
        env = await client.call("env", {"name": name, "context": self.context.name})
        return await anyio.to_thread.run_sync(write_env, env, path)

    async def switch_context(self, name: str) -> DaemonSource:
        fresh = await connect_daemon(context=name, kubeconfig=self.kubeconfig, socket=self.socket)
        await self.close(keep_intercepts=True)
        return fresh
