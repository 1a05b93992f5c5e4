"""The agent's settings, read from the environment the injector gives it."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.protocol import AgentConfig


class ConfigError(Exception):
    title = "Agent configuration is invalid"


class AgentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: AgentConfig
    pod_name: str
    namespace: str
    pod_ip: str
    """Where the agent's takeover ports listen (the pod's address)."""
    app_host: str
    """Where the app container listens (same pod: the pod IP, or 127.0.0.1)."""
    tunnel_host: str
    """The tunnel listener: the pod's loopback only."""
    app_env: dict[str, str] = Field(default_factory=dict)
    head_timeout: float = 10.0
    """Seconds a client may take to send a complete request head (then 408)."""
    manager_heartbeat: float = 5.0
    tunnel_ping_interval: float = 2.0
    tunnel_ping_timeout: float = 6.0


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def from_env(env: Mapping[str, str] | None = None) -> AgentSettings:
    """Settings from ``WAYLAY_AGENT_CONFIG`` and friends; ConfigError says what is wrong."""
    env = os.environ if env is None else env
    raw = env.get("WAYLAY_AGENT_CONFIG")
    if not raw:
        raise ConfigError(
            "WAYLAY_AGENT_CONFIG is not set: the agent needs its JSON config "
            "(the waylay.dev/agent-config annotation), normally injected by the webhook"
        )
    try:
        config = AgentConfig.model_validate_json(raw)
    except ValidationError as exc:
        raise ConfigError(f"WAYLAY_AGENT_CONFIG is not a valid agent config: {exc}") from exc
    pod_ip = env.get("WAYLAY_POD_IP") or env.get("POD_IP") or "127.0.0.1"
    app_host = env.get("WAYLAY_APP_HOST") or pod_ip
    tunnel_host = env.get("WAYLAY_TUNNEL_HOST") or (pod_ip if _is_loopback(pod_ip) else "127.0.0.1")
    prefix = config.env_prefix
    app_env = {k[len(prefix) :]: v for k, v in env.items() if k.startswith(prefix)}
    try:
        return AgentSettings(
            config=config,
            pod_name=env.get("WAYLAY_POD_NAME") or env.get("POD_NAME") or "unknown-pod",
            namespace=env.get("WAYLAY_NAMESPACE") or config.namespace,
            pod_ip=pod_ip,
            app_host=app_host,
            tunnel_host=tunnel_host,
            app_env=app_env,
            head_timeout=float(env.get("WAYLAY_HEAD_TIMEOUT", "10")),
        )
    except (ValidationError, ValueError) as exc:
        raise ConfigError(f"agent environment is invalid: {exc}") from exc
