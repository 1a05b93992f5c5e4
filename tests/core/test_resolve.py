"""Resolving a workload, its Service and a service port from what was typed.

Covers: unknown workload with "did you mean"; Deployment preferred over a
same-named ReplicaSet; no Service -> NoMatchingService; two Services ->
SeveralServices unless --service names one; a --service that does not
select the workload lists those that do; a single port is chosen for the
user, several need a name or number; --port LOCAL[:SVCPORT] parsing.
"""

from __future__ import annotations

import pytest

from core.errors import AmbiguousPort, NoMatchingService, SeveralServices, UnknownWorkload
from core.models import ServicePortInfo, ServiceRef, WorkloadInfo
from core.resolve import find_workload, parse_port_flag, pick_port, pick_service

HTTP = ServicePortInfo(name="http", port=80, target_port="http")
GRPC = ServicePortInfo(name="grpc", port=9090, target_port=9090)
CATALOG = WorkloadInfo(
    namespace="demo",
    name="catalog",
    kind="Deployment",
    services=[
        ServiceRef(name="catalog", ports=[HTTP, GRPC]),
        ServiceRef(name="catalog-admin", ports=[HTTP]),
    ],
)
LEGACY = WorkloadInfo(namespace="demo", name="catalog", kind="ReplicaSet")
LONELY = WorkloadInfo(namespace="demo", name="lonely", kind="StatefulSet")


def test_find_workload() -> None:
    assert find_workload([LEGACY, CATALOG], "catalog", "demo") is CATALOG
    with pytest.raises(UnknownWorkload, match="catalgo") as info:
        find_workload([CATALOG, LONELY], "catalgo", "demo")
    assert "'catalog'" in info.value.hint
    with pytest.raises(UnknownWorkload):
        find_workload([CATALOG], "catalog", "prod")


def test_pick_service() -> None:
    with pytest.raises(NoMatchingService):
        pick_service(LONELY)
    with pytest.raises(SeveralServices) as info:
        pick_service(CATALOG)
    assert info.value.services == ["catalog", "catalog-admin"]
    assert pick_service(CATALOG, "catalog-admin").name == "catalog-admin"
    with pytest.raises(NoMatchingService, match="'nope'") as missing:
        pick_service(CATALOG, "nope")
    assert "catalog, catalog-admin" in missing.value.hint


def test_pick_port() -> None:
    catalog = CATALOG.services[0]
    assert pick_port(catalog, "grpc") == GRPC
    assert pick_port(catalog, "80") == HTTP
    assert pick_port(CATALOG.services[1]) == HTTP
    with pytest.raises(AmbiguousPort) as info:
        pick_port(catalog)
    assert info.value.ports == ["http", "grpc"]
    with pytest.raises(AmbiguousPort, match="no port '7'"):
        pick_port(catalog, "7")


def test_parse_port_flag() -> None:
    assert parse_port_flag(None) == (8080, None)
    assert parse_port_flag("9000") == (9000, None)
    assert parse_port_flag("9000:http") == (9000, "http")
    assert parse_port_flag("9000:80") == (9000, "80")
    with pytest.raises(ValueError, match="must be a number"):
        parse_port_flag("http:80")
    with pytest.raises(ValueError, match="between"):
        parse_port_flag("70000")
