"""Names in lists (``sandbox.validation``): containers, container ports, Service ports.

Covers: a container name must be a DNS label and unique in its list; a
container port name must be an IANA service name and unique in its container;
a Service port name must be a DNS label and unique, and is required only when
there are several ports; every problem is reported at once, in order, each
with its field and reason.
"""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.errors import ApiError
from sandbox.resources import by_key
from sandbox.validation import validate


def _v1(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "ns"},
        "spec": spec,
    }


def _causes(resource: str, obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    with pytest.raises(ApiError) as err:
        validate(by_key(resource), obj)
    assert err.value.code == 422
    details = err.value.details or {}
    return [(c["field"], c["reason"], c["message"]) for c in details["causes"]]


def test_container_and_container_port_names() -> None:
    ports = [
        {"name": "http", "containerPort": 80},
        {"name": "http", "containerPort": 81},
        {"name": "a-very-long-port-name", "containerPort": 82},
    ]
    containers = [
        {"name": "app", "image": "demo/app", "ports": ports},
        {"name": "app", "image": "demo/other"},
        {"name": "Bad_Name", "image": "demo/third"},
    ]
    pod = _v1("Pod", {"containers": containers})
    causes = _causes("pods", pod)
    assert [(field, reason) for field, reason, _ in causes] == [
        ("spec.containers[0].ports[1].name", "FieldValueDuplicate"),
        ("spec.containers[0].ports[2].name", "FieldValueInvalid"),
        ("spec.containers[1].name", "FieldValueDuplicate"),
        ("spec.containers[2].name", "FieldValueInvalid"),
    ]
    assert causes[0][2] == "Duplicate value: 'http'"
    assert causes[1][2].endswith("must be no more than 15 characters")
    assert causes[3][2].startswith("Invalid value: 'Bad_Name': ")


def test_service_port_names() -> None:
    ports = [{"name": "web", "port": 80}, {"name": "web", "port": 81}, {"port": 82}]
    service = _v1("Service", {"ports": [*ports, {"name": "Web", "port": 83}]})
    assert [(field, reason) for field, reason, _ in _causes("services", service)] == [
        ("spec.ports[1].name", "FieldValueDuplicate"),
        ("spec.ports[2].name", "FieldValueRequired"),
        ("spec.ports[3].name", "FieldValueInvalid"),
    ]
    single = {**service, "spec": {"ports": [{"port": 80}]}}
    validate(by_key("services"), single)  # one unnamed port is fine
