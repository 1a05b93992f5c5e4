"""From `waylay intercept` flags to an InterceptSpec.

Covers: naming (derived and explicit); the only port chosen, a named or
numbered one when asked; single-user default is global tcp; headers or a
path make it personal; team mode defaults to the auto header and prefix /;
`auto` expands to <session>:<name>; K=V headers are lower-cased; `all` with
other headers, tcp with headers, malformed headers and two path rules are
refused; the workload kind and service port name travel in the spec; a
workload kind (spec files) picks among same-named workloads of different kinds.
"""

from __future__ import annotations

from typing import Any, Literal

import pytest

from core.errors import SeveralServices
from core.intercept import InterceptRequest, build_spec, parse_headers
from core.models import ServicePortInfo, ServiceRef, WorkloadInfo
from core.protocol import AUTO_HEADER, InterceptSpec, PathRule

HTTP = ServicePortInfo(name="http", port=80, target_port="http")
GRPC = ServicePortInfo(name="grpc", port=9090, target_port=9090)
LEDGER = WorkloadInfo(
    namespace="shop",
    name="ledger",
    kind="StatefulSet",
    services=[ServiceRef(name="ledger", ports=[HTTP, GRPC])],
)
ORDERS = WorkloadInfo(
    namespace="shop",
    name="orders",
    kind="Deployment",
    services=[ServiceRef(name="orders", ports=[HTTP])],
)
CATALOG = WorkloadInfo(
    namespace="shop",
    name="catalog",
    kind="Deployment",
    services=[ServiceRef(name="a", ports=[HTTP]), ServiceRef(name="b", ports=[HTTP])],
)
ALL = [LEDGER, ORDERS, CATALOG]


def _build(mode: Literal["single-user", "team"] = "single-user", **flags: Any) -> InterceptSpec:
    return build_spec(
        InterceptRequest(**flags),
        ALL,
        default_namespace="shop",
        session_id="s1",
        mode=mode,
    )


def test_global_default_and_naming() -> None:
    spec = _build(name="orders", port="9000")
    assert (spec.name, spec.workload, spec.workload_kind) == ("orders-shop", "orders", "Deployment")
    assert (spec.service, spec.service_port, spec.service_port_name) == ("orders", 80, "http")
    assert (spec.mechanism, spec.headers, spec.path, spec.local_port) == ("tcp", {}, None, 9000)
    named = _build(name="mine", workload="ledger", port="9000:grpc")
    assert (named.name, named.workload_kind, named.service_port) == ("mine", "StatefulSet", 9090)


def test_personal_by_flags_and_team_defaults() -> None:
    spec = _build(name="orders", http_header=["X-User=alice"], http_path_prefix="/api")
    assert spec.mechanism == "http" and spec.headers == {"x-user": "alice"}
    assert spec.path == PathRule(kind="prefix", value="/api")
    team = _build(mode="team", name="orders")
    assert team.mechanism == "http"
    assert team.headers == {AUTO_HEADER: "s1:orders-shop"}
    assert team.path == PathRule(kind="prefix", value="/")
    forced_global = _build(mode="team", name="orders", mechanism="tcp")
    assert forced_global.headers == {} and forced_global.path is None
    everything = _build(name="orders", http_header=["all"])
    assert everything.mechanism == "http" and everything.headers == {}


def test_refusals() -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_headers(["novalue"], "x")
    with pytest.raises(ValueError, match="drop the other headers"):
        parse_headers(["all", "a=b"], "x")
    with pytest.raises(ValueError, match="--mechanism tcp"):
        _build(name="orders", mechanism="tcp", http_header=["a=b"])
    with pytest.raises(ValueError, match="at most one"):
        _build(name="orders", http_path_prefix="/a", http_path_equal="/b")
    with pytest.raises(SeveralServices):
        _build(name="catalog")
    assert _build(name="catalog", service="b").service == "b"


def test_workload_kind_picks_among_same_names() -> None:
    orders_rs = ORDERS.model_copy(update={"kind": "ReplicaSet"})
    both = [orders_rs, ORDERS]
    made = build_spec(
        InterceptRequest(name="orders", workload_kind="ReplicaSet"),
        both,
        default_namespace="shop",
        session_id="s1",
    )
    assert made.workload_kind == "ReplicaSet"
    default = build_spec(
        InterceptRequest(name="orders"), both, default_namespace="shop", session_id="s1"
    )
    assert default.workload_kind == "Deployment"
