"""Running an aiohttp application as an anyio task.

``await tg.start(serve, app, host, port)`` returns the bound ``(host, port)``
once the socket listens (port 0 picks a free one) and cleans up on cancel.
"""

from __future__ import annotations

import ssl

import anyio
from aiohttp import web
from anyio.abc import TaskStatus


async def serve(
    app: web.Application,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    *,
    task_status: TaskStatus[tuple[str, int]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True)
        await site.start()
        bound = runner.addresses[0]
        task_status.started((str(bound[0]), int(bound[1])))
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
