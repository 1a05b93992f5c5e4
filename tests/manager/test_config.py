"""The manager's settings from the environment (``webhook.config``, ``webhook.__main__``).

Covers: defaults (agents dial the Service name; clients on loopback only);
``WAYLAY_*`` variables override; with a pod IP the webhook and agent APIs bind
it, and the client API stays on 127.0.0.1 unless the pod IP is itself a
loopback address (the sandbox), so only a port-forward reaches it; the
preview router is off without a domain, binds the pod IP like the agent API,
and a scheme other than http/https is refused.
"""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from webhook.__main__ import config_from_env
from webhook.config import ManagerConfig
from webhook.inject import InjectionPolicy


def test_defaults_and_overrides() -> None:
    config = ManagerConfig.from_env({})
    assert config.manager_address == "waylay-manager.waylay:8081"
    assert config.client_host == "127.0.0.1" and config.use_cluster
    config = ManagerConfig.from_env(
        {"WAYLAY_NAMESPACE": "ops", "WAYLAY_POLICY": "Never", "WAYLAY_USE_CLUSTER": "false"}
    )
    assert config.manager_address == "waylay-manager.ops:8081"
    assert config.policy is InjectionPolicy.NEVER and not config.use_cluster
    assert config.preview_domain == "" and config.preview_port == 8083


def test_preview_settings() -> None:
    config = ManagerConfig.from_env(
        {
            "WAYLAY_PREVIEW_DOMAIN": "preview.example.com",
            "WAYLAY_PREVIEW_PORT": "9083",
            "WAYLAY_PREVIEW_SCHEME": "https",
        }
    )
    assert (config.preview_domain, config.preview_port) == ("preview.example.com", 9083)
    assert config.preview_scheme == "https"
    with pytest.raises(ValidationError):
        ManagerConfig.from_env({"WAYLAY_PREVIEW_SCHEME": "ftp"})


@pytest.mark.parametrize(
    ("pod_ip", "client_host"), [("10.1.2.3", "127.0.0.1"), ("127.3.0.7", "127.3.0.7")]
)
def test_listeners_follow_the_pod_ip(
    monkeypatch: pytest.MonkeyPatch, pod_ip: str, client_host: str
) -> None:
    for key in list(os.environ):
        if key.startswith("WAYLAY_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("WAYLAY_POD_IP", pod_ip)
    config = config_from_env()
    assert config.webhook_host == pod_ip and config.agent_host == pod_ip
    assert config.preview_host == pod_ip
    assert config.client_host == client_host
