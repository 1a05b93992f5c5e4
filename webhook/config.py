"""The manager's settings, from ``WAYLAY_*`` environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from webhook.inject import InjectionPolicy


class ManagerConfig(BaseModel):
    namespace: str = "waylay"
    """The namespace the manager runs in (its ConfigMap and Secret live there)."""
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 8443
    tls_dir: Path | None = None
    """Holds ``tls.crt`` and ``tls.key`` (the serving cert made at install)..."""
    tls_cert: str = ""
    """... or the PEMs themselves (from the Secret, by ``secretKeyRef``)."""
    tls_key: str = ""
    agent_host: str = "0.0.0.0"
    agent_port: int = 8081
    client_host: str = "127.0.0.1"
    """Loopback only: clients come through a port-forward."""
    client_port: int = 8082
    preview_domain: str = ""
    """``D`` of ``waylay install --preview-domain D``: serve ``<token>.D`` (empty: no router)."""
    preview_host: str = "0.0.0.0"
    preview_port: int = 8083
    preview_scheme: Literal["http", "https"] = "http"
    """How preview URLs are shown: ``https`` when the Ingress for ``*.D`` has a TLS secret."""
    preview_ca_file: str = ""
    """More CAs to trust for TLS to the ingress (besides the system's and the cluster's)."""
    manager_address: str = ""
    """What agents dial; defaults to ``waylay-manager.<namespace>:<agent_port>``."""
    agent_image: str = "waylay/agent:0.1.0"
    policy: InjectionPolicy = InjectionPolicy.ON_DEMAND
    prepare_timeout: float = 150.0
    """How long prepare waits for agents before it explains why they don't come
    (below the client's own 180 s, so the explanation arrives first)."""
    session_ttl: float = 10.0
    agent_ttl: float = 20.0
    use_cluster: bool = True
    """False: no Kubernetes access (mode and keys in memory, no prepare)."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ManagerConfig:
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {}
        for name in cls.model_fields:
            raw = env.get("WAYLAY_" + name.upper())
            if raw is not None:
                values[name] = (
                    raw.lower() not in ("0", "false", "no") if name == "use_cluster" else raw
                )
        config = cls.model_validate(values)
        if not config.manager_address:
            config.manager_address = f"waylay-manager.{config.namespace}:{config.agent_port}"
        return config
