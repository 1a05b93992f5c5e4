"""From what the user asked (``waylay intercept ...``) to an ``InterceptSpec``.

Applies the naming rules, finds the workload, its Service and port, and the
mode's defaults (DESIGN.md): single-user -> global (``tcp``); team ->
personal with the ``auto`` header and path prefix ``/``. ``--http-header``
takes ``K=V`` (repeatable), ``auto`` or ``all``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.models import WorkloadInfo
from core.naming import intercept_name
from core.protocol import AUTO_HEADER, InterceptSpec, PathRule
from core.resolve import find_workload, parse_port_flag, pick_port, pick_service

__all__ = ["InterceptRequest", "build_spec", "parse_headers"]

Mode = Literal["single-user", "team"]


class InterceptRequest(BaseModel):
    """The flags of ``waylay intercept`` (and of a spec file entry)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    """The positional argument: a workload name, or the intercept's name with --workload."""
    namespace: str | None = None
    workload: str | None = None
    workload_kind: Literal["Deployment", "ReplicaSet", "StatefulSet"] | None = None
    """Only when workloads of different kinds share the name (else Deployments win)."""
    service: str | None = None
    port: str | None = None
    """``LOCAL[:SVCPORT]``."""
    address: str = "127.0.0.1"
    mechanism: Literal["tcp", "http"] | None = None
    http_header: list[str] = Field(default_factory=list)
    http_path_equal: str | None = None
    http_path_prefix: str | None = None
    http_path_regex: str | None = None
    preview_url: bool | None = None
    """Make a preview URL (default: yes in team mode, no in single-user mode)."""
    ingress_host: str | None = None
    ingress_port: int | None = None
    ingress_tls: bool | None = None
    ingress_l5: str | None = None


def parse_headers(values: Sequence[str], auto_value: str) -> tuple[dict[str, str], bool]:
    """``--http-header`` values -> (headers to match, explicitly "all")."""
    headers: dict[str, str] = {}
    match_all = False
    for value in values:
        if value == "auto":
            headers[AUTO_HEADER] = auto_value
        elif value == "all":
            match_all = True
        else:
            key, sep, val = value.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--http-header {value!r}: use KEY=VALUE, 'auto' or 'all'")
            if any(c in _REGEX_META for c in val):  # the agents match it as a regex
                _check_regex("--http-header", value, val)
            headers[key.strip().lower()] = val
    if match_all and headers:
        raise ValueError("--http-header=all matches every request; drop the other headers")
    return headers, match_all


_REGEX_META = frozenset(".^$*+?{}[]\\|()")
"""A header value with one of these is a regular expression (as the agents read it)."""


def _check_regex(flag: str, given: str, pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(
            f"{flag} {given!r}: {pattern!r} is not a valid regular expression ({exc}); "
            "escape metacharacters with a backslash"
        ) from exc


def _path_rule(req: InterceptRequest) -> PathRule | None:
    given = [
        (kind, value)
        for kind, value in (
            ("equal", req.http_path_equal),
            ("prefix", req.http_path_prefix),
            ("regex", req.http_path_regex),
        )
        if value
    ]
    if len(given) > 1:
        raise ValueError(
            "give at most one of --http-path-equal, --http-path-prefix, --http-path-regex"
        )
    if not given:
        return None
    kind, value = given[0]
    if kind == "regex":
        _check_regex("--http-path-regex", value, value)
    return PathRule(kind=kind, value=value)  # type: ignore[arg-type]


def build_spec(
    req: InterceptRequest,
    workloads: Sequence[WorkloadInfo],
    *,
    default_namespace: str,
    session_id: str,
    mode: Mode = "single-user",
) -> InterceptSpec:
    """Resolve everything; raises core.errors lookup errors or ValueError for bad flags."""
    namespace = req.namespace or default_namespace
    naming = intercept_name(req.name, namespace, req.workload)
    kinds = [w for w in workloads if req.workload_kind in (None, w.kind)]
    workload = find_workload(kinds, naming.workload, namespace)
    service = pick_service(workload, req.service)
    local_port, svc_port = parse_port_flag(req.port)
    port = pick_port(service, svc_port)
    header_values = list(req.http_header)
    path = _path_rule(req)
    mechanism = req.mechanism
    if mechanism is None:
        personal = bool(header_values or path) or mode == "team"
        mechanism = "http" if personal else "tcp"
    if mechanism == "http" and not header_values and mode == "team":
        header_values = ["auto"]
    if mechanism == "http" and path is None and mode == "team":
        path = PathRule(kind="prefix", value="/")
    headers, _all = parse_headers(header_values, f"{session_id}:{naming.name}")
    if mechanism == "tcp" and (headers or path):
        raise ValueError("--mechanism tcp takes every connection; drop --http-header/--http-path-*")
    return InterceptSpec(
        name=naming.name,
        namespace=namespace,
        workload=workload.name,
        workload_kind=workload.kind,
        service=service.name,
        service_port=port.port,
        service_port_name=port.name,
        protocol="UDP" if port.protocol == "UDP" else "TCP",
        mechanism=mechanism,
        headers=headers,
        path=path,
        local_address=req.address,
        local_port=local_port,
    )
