"""How prepare picks the port takeover (``webhook.rollout.takeover_for``) and the Service port.

Covers: a named targetPort finds its container and port; a numeric one finds
the container declaring it (or the first); the agent port avoids every port
the pod declares and the tunnel port; a port already prepared is reused
(stable agent port); a named targetPort no container declares, or a Service
port that does not exist, is a clear error.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.protocol import AgentConfig, InterceptSpec
from webhook.registry import RegistryError
from webhook.rollout import find_service_port, takeover_for


def template() -> dict[str, Any]:
    return {
        "spec": {
            "containers": [
                {"name": "side", "ports": [{"name": "metrics", "containerPort": 9900}]},
                {
                    "name": "app",
                    "ports": [
                        {"name": "http", "containerPort": 8080},
                        {"name": "admin", "containerPort": 9901},
                    ],
                },
            ]
        }
    }


def spec(port: int = 80) -> InterceptSpec:
    return InterceptSpec(
        name="x", namespace="demo", workload="web", service="web", service_port=port
    )


def test_named_target_port() -> None:
    tp = takeover_for(template(), spec(), {"port": 80, "targetPort": "http", "name": "web"}, None)
    assert (tp.app_container, tp.app_port, tp.target_port_name) == ("app", 8080, "http")
    assert tp.service_port_name == "web"
    assert tp.agent_port not in {9900, 9901, 8080, 7777}


def test_numeric_target_port() -> None:
    tp = takeover_for(template(), spec(), {"port": 80, "targetPort": 8080}, None)
    assert (tp.app_container, tp.app_port, tp.target_port_name) == ("app", 8080, "")
    undeclared = takeover_for(template(), spec(), {"port": 80, "targetPort": 5000}, None)
    assert undeclared.app_container == "side" and undeclared.app_port == 5000


def test_prepared_port_is_reused_and_new_ones_do_not_collide() -> None:
    first = takeover_for(template(), spec(), {"port": 80, "targetPort": "http"}, None)
    existing = AgentConfig(
        workload_kind="Deployment",
        workload_name="web",
        namespace="demo",
        manager_address="m:1",
        ports=[first],
    )
    assert takeover_for(template(), spec(), {"port": 80, "targetPort": "http"}, existing) == first
    second = takeover_for(template(), spec(81), {"port": 81, "targetPort": "admin"}, existing)
    assert second.agent_port != first.agent_port


def test_errors_name_what_is_missing() -> None:
    with pytest.raises(RegistryError) as err:
        takeover_for(template(), spec(), {"port": 80, "targetPort": "grpc"}, None)
    assert "grpc" in err.value.problem.message
    service = {"spec": {"ports": [{"name": "web", "port": 80, "protocol": "TCP"}]}}
    with pytest.raises(RegistryError) as err:
        find_service_port(service, spec(81))
    assert err.value.problem.code == "not-found" and "web=80" in err.value.problem.hint
