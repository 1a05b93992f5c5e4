"""The tunnel port: clients (through a port-forward) connect here.

Each connection becomes an :class:`AgentTunnel`; once its handshake is done it
is registered under its session id. When it closes (client gone, heartbeats
missed), the session's traffic goes to the app at once (fail-open) and its
in-flight streams end.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import anyio
import anyio.abc

from agent.sessions import Sessions
from core.tunnel import AgentTunnel, TunnelError

log = logging.getLogger(__name__)


class TunnelServer:
    def __init__(
        self,
        sessions: Sessions,
        *,
        host: str,
        port: int,
        ping_interval: float = 2.0,
        ping_timeout: float = 6.0,
        on_session: Callable[[AgentTunnel], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.host = host
        self.port = port
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.on_session = on_session
        self.address: tuple[str, int] = (host, port)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port)
        sockname = listener.extra(anyio.abc.SocketAttribute.local_address)
        self.address = (str(sockname[0]), int(sockname[1]))
        async with listener:
            task_status.started()
            await listener.serve(self._handle)

    async def _handle(self, sock: anyio.abc.SocketStream) -> None:
        tunnel = AgentTunnel(
            sock,
            pod=self.sessions.pod,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
        )
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(tunnel.run)
                replaced = self.sessions.add(tunnel)
                log.info("client session %s connected", tunnel.session_id)
                if replaced is not None:
                    tg.start_soon(replaced.aclose)
                if self.on_session is not None:
                    self.on_session(tunnel)
        except TunnelError as exc:
            log.warning("tunnel refused: %s", exc)
        except ExceptionGroup as group:
            refused = group.subgroup(TunnelError)
            if refused is not None and refused.exceptions:
                log.warning("tunnel refused: %s", refused.exceptions[0])
            else:
                log.exception("tunnel failed")
        except Exception:
            log.exception("tunnel failed")
        finally:
            self.sessions.remove(tunnel)
            with contextlib.suppress(Exception):
                await tunnel.aclose()
            if tunnel.session_id:
                log.info("client session %s gone: %s", tunnel.session_id, tunnel.mux.close_reason)
