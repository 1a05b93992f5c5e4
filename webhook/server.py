"""The manager process: admission webhook, agent API, client API, the reaper and,
with a preview domain, the preview router.

``await tg.start(run_manager, config, store, preparer)`` returns the bound
addresses once every listener is up.
"""

from __future__ import annotations

import logging
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from webhook.admission import InjectorSettings, admission_app
from webhook.agent_api import agent_app
from webhook.apikeys import SettingsStore
from webhook.client_api import ClientApi, Preparer
from webhook.config import ManagerConfig
from webhook.http import serve
from webhook.preview import PreviewRouter, serve_router
from webhook.registry import Registry

log = logging.getLogger(__name__)

REAP_INTERVAL = 1.0


@dataclass(frozen=True)
class Bound:
    webhook: tuple[str, int] | None
    agent: tuple[str, int]
    client: tuple[str, int]
    preview: tuple[str, int] | None = None


def server_ssl_context(config: ManagerConfig) -> ssl.SSLContext | None:
    """TLS for the webhook from ``tls_dir`` or the PEMs; None when neither is set."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if config.tls_cert and config.tls_key:
        with tempfile.TemporaryDirectory(prefix="waylay-tls-") as tmp:
            cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            cert.write_text(config.tls_cert)
            key.touch(0o600)
            key.write_text(config.tls_key)
            ctx.load_cert_chain(cert, key)
        return ctx
    if config.tls_dir is not None:
        ctx.load_cert_chain(config.tls_dir / "tls.crt", config.tls_dir / "tls.key")
        return ctx
    return None


async def reap(registry: Registry, interval: float = REAP_INTERVAL) -> None:
    while True:
        await anyio.sleep(interval)
        for sid in registry.expire():
            log.info("session %s expired: its intercepts were dropped", sid)


async def run_manager(
    config: ManagerConfig,
    store: SettingsStore,
    registry: Registry,
    preparer: Preparer | None = None,
    *,
    router: PreviewRouter | None = None,
    task_status: TaskStatus[Bound] = anyio.TASK_STATUS_IGNORED,
) -> None:
    injector = InjectorSettings(
        manager_address=config.manager_address,
        agent_image=config.agent_image,
        policy=config.policy,
    )
    api = ClientApi(registry, store, preparer, router=router)
    async with anyio.create_task_group() as tg:
        tls = server_ssl_context(config)
        webhook = None
        if tls is not None:
            webhook = await tg.start(
                serve, admission_app(injector), config.webhook_host, config.webhook_port, tls
            )
        agent = await tg.start(serve, agent_app(registry), config.agent_host, config.agent_port)
        client = await tg.start(serve, api.app(), config.client_host, config.client_port)
        preview = None
        if router is not None:
            preview = await tg.start(serve_router, router, config.preview_host, config.preview_port)
        tg.start_soon(reap, registry)
        log.info(
            "manager up: webhook %s, agents %s, clients %s, preview router %s",
            webhook,
            agent,
            client,
            preview,
        )
        task_status.started(Bound(webhook, agent, client, preview))
