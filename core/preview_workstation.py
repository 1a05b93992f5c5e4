"""Everything the workstation needs to serve preview URLs, started in one call.

``server = await tg.start(run_workstation_previews, kube, session.events())``
starts the port-forwards to the ingress (``PortForwardDial``), the preview
server (loopback by default; ``host="0.0.0.0", advertise=<LAN address>`` to
share on the LAN) trusting the system CAs, the cluster's CA and ``ca_file``,
and the follower that kills a URL the moment its intercept ends. Then
``server.create(info.id, target, intercept_headers(spec, extra))``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable

import anyio
import anyio.abc

from core.kube import Kube
from core.preview_dial import PortForwardDial, ingress_trust
from core.preview_follow import end_with_intercepts
from core.preview_server import PreviewServer
from core.protocol import Event

__all__ = ["run_workstation_previews"]


async def run_workstation_previews(
    kube: Kube,
    events: AsyncIterable[Event] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    advertise: str = "",
    ca_file: str | None = None,
    task_status: anyio.abc.TaskStatus[PreviewServer] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``events``: the session's event feed (``Session.events()``)."""
    dial = PortForwardDial(kube)
    server = PreviewServer(
        dial, host=host, port=port, advertise=advertise, ssl_context=ingress_trust(kube, ca_file)
    )
    async with anyio.create_task_group() as tg:
        await tg.start(dial.run)
        await tg.start(server.run)
        if events is not None:
            tg.start_soon(end_with_intercepts, server, events)
        task_status.started(server)
