"""Wire models shared by the client (core), the traffic agent and the manager.

Every message is a JSON object with a ``type`` field, sent as one WebSocket
text frame. Three conversations use them:

- agent -> manager (agent API on the pod network, ``/v1/agent``):
  ``AgentHello`` first, then ``Heartbeat`` every few seconds; the manager
  answers ``AgentWelcome`` and then pushes ``InterceptsSnapshot`` (the full
  desired state for that agent) whenever it changes. The agent sends
  ``TrafficEvent`` messages only to clients, never to the manager.
- client -> manager (client API on the manager pod's loopback, reached through
  a port-forward, ``/v1/client``): ``ClientHello`` first, answered by
  ``ClientWelcome`` or ``ErrorReply``; then ``Request``/``Response`` pairs
  matched by ``id``, ``Heartbeat`` from the client, and ``Event`` pushes from
  the manager (progress while an agent arrives, intercept state changes).
- client -> agent: the multiplexed tunnel (see ``core.tunnel``), whose control
  stream carries ``TunnelHello`` and then ``TrafficEvent`` pushes.

A peer that receives a ``version`` whose major number differs from its own
answers with an ``ErrorReply`` whose code is ``version-skew`` and closes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

PROTOCOL_VERSION = "1.0"
"""Major.minor. Peers with different majors refuse each other."""

AGENT_CONFIG_ANNOTATION = "waylay.dev/agent-config"
"""Pod-template annotation (JSON ``AgentConfig``) written by the manager."""

INJECT_ANNOTATION = "waylay.dev/inject"
"""Opt-out: ``disabled`` on a pod (template) means never inject."""

AGENT_CONTAINER = "waylay-agent"
"""Name of the container the injector adds to a pod."""

TARGET_PORT_UNDO_ANNOTATION = "waylay.dev/target-port-undo"
"""On a Service whose numeric ``targetPort`` the manager repointed at the agent:
JSON ``{"<port>/<protocol>": <original targetPort>}``, read by ``uninstall``."""

AUTO_HEADER = "x-waylay-intercept-id"
"""The header an ``auto`` personal intercept matches: ``<session>:<name>``."""

REDACTED_HEADERS = frozenset({"authorization", "cookie", "set-cookie", "proxy-authorization"})


def major(version: str) -> str:
    return version.split(".", 1)[0]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


# ----------------------------------------------------------------- agent config


class TakeoverPort(_Model):
    """One Service port whose traffic the agent takes over in the pod."""

    service: str
    """Name of the Service."""
    service_port: int
    """The Service's ``port`` number."""
    service_port_name: str = ""
    """The Service port's ``name`` (may be empty for single-port Services)."""
    protocol: Literal["TCP", "UDP"] = "TCP"
    target_port_name: str = ""
    """The named ``targetPort`` the agent now declares; empty when numeric."""
    app_container: str
    """The container whose port is taken over."""
    app_port: int
    """Where the app listens (container port number)."""
    agent_port: int
    """Where the agent listens instead (on the pod IP)."""


class AgentConfig(_Model):
    """The agent-config annotation on a pod template (JSON)."""

    workload_kind: Literal["Deployment", "ReplicaSet", "StatefulSet"]
    workload_name: str
    namespace: str
    manager_address: str
    """``host:port`` of the manager's agent API."""
    ports: list[TakeoverPort] = Field(default_factory=list)
    tunnel_port: int = 7777
    """Tunnel listener on the pod's loopback (reached by port-forward)."""
    env_prefix: str = "WAYLAY_APP_ENV_"
    """The app container's env is copied into the agent under this prefix."""


# ------------------------------------------------------------------- intercepts


class PathRule(_Model):
    kind: Literal["equal", "prefix", "regex"]
    value: str


class InterceptSpec(_Model):
    """What a client asks for. ``headers``/``path`` empty and mechanism tcp: global."""

    name: str
    namespace: str
    workload: str
    workload_kind: Literal["Deployment", "ReplicaSet", "StatefulSet"] = "Deployment"
    service: str
    service_port: int
    service_port_name: str = ""
    protocol: Literal["TCP", "UDP"] = "TCP"
    mechanism: Literal["tcp", "http"] = "tcp"
    headers: dict[str, str] = Field(default_factory=dict)
    """Header name -> exact value, or a regex when it has metacharacters."""
    path: PathRule | None = None
    local_address: str = "127.0.0.1"
    local_port: int = 8080
    preview_url: str | None = None

    @field_validator("name")
    @classmethod
    def _dns_label(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", v):
            raise ValueError(
                "intercept names are DNS labels: lowercase letters, digits and '-', "
                "at most 63 characters"
            )
        return v

    @property
    def is_global(self) -> bool:
        return self.mechanism == "tcp"


class InterceptInfo(_Model):
    """An intercept as the manager knows it: the spec plus who and since when."""

    id: str
    """``<session_id>:<name>``: unique in the cluster."""
    spec: InterceptSpec
    session_id: str
    owner: str
    """Identity of the user (from the API key in team mode, else the client's name)."""
    created: datetime
    state: Literal["preparing", "waiting", "active", "failed", "removed"] = "active"
    message: str = ""


# -------------------------------------------------------------- agent <-> manager


class AgentHello(_Model):
    type: Literal["agent-hello"] = "agent-hello"
    version: str = PROTOCOL_VERSION
    pod: str
    namespace: str
    pod_ip: str
    workload_kind: str
    workload_name: str
    ports: list[TakeoverPort]
    tunnel_port: int
    env: dict[str, str] = Field(default_factory=dict)
    """The app container's environment, as copied by the injector."""


class AgentWelcome(_Model):
    type: Literal["agent-welcome"] = "agent-welcome"
    version: str = PROTOCOL_VERSION
    agent_id: str


class InterceptsSnapshot(_Model):
    """The complete set of intercepts an agent must apply now (replaces the last)."""

    type: Literal["intercepts"] = "intercepts"
    intercepts: list[InterceptInfo]


class Heartbeat(_Model):
    type: Literal["heartbeat"] = "heartbeat"


# -------------------------------------------------------------- client <-> manager


class ClientHello(_Model):
    type: Literal["client-hello"] = "client-hello"
    version: str = PROTOCOL_VERSION
    client: str
    """Human name of the client (user@host)."""
    api_key: str | None = None
    session_id: str | None = None
    """Given when resuming a session after a reconnect (manager restart)."""
    intercepts: list[InterceptSpec] = Field(default_factory=list)
    """Desired state when resuming: the manager rebuilds its registry from it."""


class ClientWelcome(_Model):
    type: Literal["client-welcome"] = "client-welcome"
    version: str = PROTOCOL_VERSION
    session_id: str
    identity: str
    mode: Literal["single-user", "team"]
    manager_version: str


class Request(_Model):
    type: Literal["request"] = "request"
    id: int
    op: Literal[
        "prepare",
        "create",
        "remove",
        "list",
        "revoke",
        "agents",
        "apikey-create",
        "apikey-list",
        "apikey-revoke",
        "set-mode",
        # preview URLs served by the manager's router (webhook.preview.PREVIEW_OPS)
        "preview-create",
        "preview-revoke",
        "preview-list",
    ]
    params: dict[str, Any] = Field(default_factory=dict)


class Problem(_Model):
    """A typed error that a person can act on."""

    code: str
    """Stable machine code: ``conflict``, ``version-skew``, ``unauthorized``, ..."""
    title: str
    message: str
    hint: str = ""


class Response(_Model):
    type: Literal["response"] = "response"
    id: int
    ok: bool
    result: Any = None
    error: Problem | None = None


class ErrorReply(_Model):
    type: Literal["error"] = "error"
    error: Problem


class Event(_Model):
    """Pushed by the manager: progress and intercept state."""

    type: Literal["event"] = "event"
    kind: Literal["progress", "intercept", "agent", "session"]
    data: dict[str, Any] = Field(default_factory=dict)


# ------------------------------------------------------------------ client <-> agent


class TunnelHello(_Model):
    type: Literal["tunnel-hello"] = "tunnel-hello"
    version: str = PROTOCOL_VERSION
    session_id: str
    watch_all: bool = False
    """Also receive metadata of all traffic through the agent (debugging)."""


class TrafficEvent(_Model):
    """One connection (global) or one request (personal) seen by an agent."""

    type: Literal["traffic"] = "traffic"
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    pod: str = ""
    intercept: str = ""
    """Intercept id, or empty for traffic that matched nothing."""
    client: str = ""
    """Session id that received it, empty when it went to the app."""
    protocol: Literal["tcp", "udp", "http", "h2"] = "tcp"
    method: str = ""
    path: str = ""
    status: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    duration_ms: float = 0.0
    routed: Literal["workstation", "app"] = "app"
    reason: str = ""
    """Why an unmatched request did not match (e.g. "header x-waylay-intercept-id missing")."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Request headers, with REDACTED_HEADERS values replaced by ``<redacted>``."""


def redact(headers: dict[str, str]) -> dict[str, str]:
    return {k: ("<redacted>" if k.lower() in REDACTED_HEADERS else v) for k, v in headers.items()}


Message = Annotated[
    AgentHello
    | AgentWelcome
    | InterceptsSnapshot
    | Heartbeat
    | ClientHello
    | ClientWelcome
    | Request
    | Response
    | ErrorReply
    | Event
    | TunnelHello
    | TrafficEvent,
    Field(discriminator="type"),
]

_MESSAGE: TypeAdapter[Message] = TypeAdapter(Message)


def parse_message(raw: str | bytes) -> Message:
    """Parse one frame; raises ``pydantic.ValidationError`` on anything else."""
    return _MESSAGE.validate_json(raw)


def dump_message(msg: BaseModel) -> str:
    return msg.model_dump_json()
