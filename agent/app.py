"""The agent process: listeners per taken-over port, the tunnel port, the manager session."""

from __future__ import annotations

import logging

import anyio
import anyio.abc

from agent.config import AgentSettings
from agent.http1 import PortContext
from agent.listener import PortListener
from agent.manager import ManagerSession
from agent.sessions import Sessions
from agent.state import InterceptTable
from agent.tunnels import TunnelServer
from agent.udp import UdpListener
from core.protocol import AgentHello, InterceptInfo, InterceptsSnapshot
from core.tunnel import AgentTunnel

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        config = settings.config
        self.table = InterceptTable(config.ports)
        self.sessions = Sessions(settings.pod_name)
        self.listeners: list[PortListener] = []
        self.udp: list[UdpListener] = []
        for index, port in enumerate(config.ports):
            ctx = PortContext(
                plan=lambda i=index: self.table.plan(i),  # type: ignore[misc]
                sessions=self.sessions,
                app_host=settings.app_host,
                app_port=port.app_port,
                service_port=port.service_port,
                head_timeout=settings.head_timeout,
            )
            if port.protocol == "UDP":
                self.udp.append(UdpListener(ctx, host=settings.pod_ip, port=port.agent_port))
            else:
                self.listeners.append(PortListener(ctx, host=settings.pod_ip, port=port.agent_port))
        self.tunnels = TunnelServer(
            self.sessions,
            host=settings.tunnel_host,
            port=config.tunnel_port,
            ping_interval=settings.tunnel_ping_interval,
            ping_timeout=settings.tunnel_ping_timeout,
            on_session=self._on_session,
        )
        self.manager = ManagerSession(
            config.manager_address,
            AgentHello(
                pod=settings.pod_name,
                namespace=settings.namespace,
                pod_ip=settings.pod_ip,
                workload_kind=config.workload_kind,
                workload_name=config.workload_name,
                ports=config.ports,
                tunnel_port=config.tunnel_port,
                env=settings.app_env,
            ),
            self.apply_snapshot,
            heartbeat=settings.manager_heartbeat,
        )

    def apply(self, intercepts: list[InterceptInfo]) -> None:
        self.table.apply(intercepts)
        for listener in self.listeners:
            listener.replan()
        self.sessions.tell_refusals(self.table.refused)

    def apply_snapshot(self, snapshot: InterceptsSnapshot) -> None:
        log.info("applying %d intercept(s) from the manager", len(snapshot.intercepts))
        self.apply(snapshot.intercepts)

    def _on_session(self, tunnel: AgentTunnel) -> None:
        self.sessions.tell_refusals(self.table.refused)

    async def run(
        self,
        *,
        manager: bool = True,
        task_status: anyio.abc.TaskStatus[Agent] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        for listener in self.listeners:
            await listener.start()
        for udp in self.udp:
            await udp.start()
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self.tunnels.run)
                if manager:
                    tg.start_soon(self.manager.run)
                log.info(
                    "agent for %s/%s serving %d port(s); tunnel on %s:%d",
                    self.settings.namespace,
                    self.settings.pod_name,
                    len(self.listeners) + len(self.udp),
                    *self.tunnels.address,
                )
                task_status.started(self)
        finally:
            with anyio.CancelScope(shield=True):
                for listener in self.listeners:
                    await listener.stop()
                for udp in self.udp:
                    udp.stop()
