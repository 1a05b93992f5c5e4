"""``python -m webhook``: run the traffic manager (image ``waylay/manager``)."""

from __future__ import annotations

import ipaddress
import logging
import os
import sys

import anyio

from core.errors import WaylayError
from webhook.apikeys import KubeSettingsStore, MemorySettingsStore, SettingsStore
from webhook.client_api import Preparer
from webhook.config import ManagerConfig
from webhook.kube import AsyncKube, connect
from webhook.preview import PreviewRouter, make_router
from webhook.registry import Registry
from webhook.rollout import Rollout
from webhook.server import run_manager

log = logging.getLogger("webhook")

MANAGER_SERVICE = "waylay-manager"


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def config_from_env() -> ManagerConfig:
    """Env settings; listeners bind the pod IP (the sandbox gives each pod a loopback one)."""
    config = ManagerConfig.from_env()
    pod_ip = os.environ.get("WAYLAY_POD_IP", "")
    explicit = {k.removeprefix("WAYLAY_").lower() for k in os.environ if k.startswith("WAYLAY_")}
    if pod_ip:
        if "webhook_host" not in explicit:
            config.webhook_host = pod_ip
        if "agent_host" not in explicit:
            config.agent_host = pod_ip
        if "preview_host" not in explicit:
            config.preview_host = pod_ip
        if "client_host" not in explicit and _is_loopback(pod_ip):
            config.client_host = pod_ip  # the sandbox: the pod's own loopback address
    return config


async def main() -> None:
    config = config_from_env()
    registry = Registry(session_ttl=config.session_ttl, agent_ttl=config.agent_ttl)
    store: SettingsStore = MemorySettingsStore()
    preparer: Preparer | None = None
    kube: AsyncKube | None = None
    if config.use_cluster:
        kube = AsyncKube(await anyio.to_thread.run_sync(connect))
        if "WAYLAY_MANAGER_ADDRESS" not in os.environ:
            service = await kube.get("v1", "Service", MANAGER_SERVICE, config.namespace)
            ip = ((service or {}).get("spec") or {}).get("clusterIP")
            if ip and ip != "None":
                config.manager_address = f"{ip}:{config.agent_port}"
        store = KubeSettingsStore(kube, config.namespace)
        preparer = Rollout(kube, registry, config.manager_address, config.prepare_timeout)
    log.info("agents will dial %s", config.manager_address)
    router: PreviewRouter | None = None
    if config.preview_domain:
        router = make_router(
            registry,
            config.preview_domain,
            kube,
            ca_file=config.preview_ca_file or None,
            scheme=config.preview_scheme,
        )
        log.info("preview URLs: %s://<token>.%s/", config.preview_scheme, router.domain)
    await run_manager(config, store, registry, preparer, router=router)


def run() -> None:
    logging.basicConfig(
        level=os.environ.get("WAYLAY_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        anyio.run(main)
    except WaylayError as e:
        print(f"waylay manager: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    run()
