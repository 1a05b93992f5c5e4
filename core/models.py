"""The view models core hands to the TUI and the CLI.

These are ours, never ``kubernetes`` client objects: small pydantic models with
only what a person looks at, built from the API's JSON by ``core.discovery``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.protocol import InterceptInfo

__all__ = [
    "AgentState",
    "ContextInfo",
    "NamespaceInfo",
    "ServicePortInfo",
    "ServiceRef",
    "WorkloadInfo",
    "WorkloadKind",
]

WorkloadKind = Literal["Deployment", "ReplicaSet", "StatefulSet"]
AgentState = Literal["none", "injecting", "ready", "partial"]


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContextInfo(_View):
    """One kubeconfig context."""

    name: str
    cluster: str
    """The kubeconfig cluster entry it points at."""
    user: str
    """The kubeconfig user entry it authenticates as."""
    namespace: str = "default"
    """The context's namespace (``default`` when it names none)."""
    server: str = ""
    """The API server URL of its cluster."""


class NamespaceInfo(_View):
    name: str
    workload_count: int = 0
    """Deployments, bare ReplicaSets and StatefulSets in it (0 when unknown)."""


class ServicePortInfo(_View):
    name: str = ""
    """The port's name; empty for an unnamed single port."""
    port: int
    target_port: int | str
    """A number, or the name of a container port."""
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"

    @property
    def label(self) -> str:
        """What a person types to pick this port: its name, else its number."""
        return self.name or str(self.port)


class ServiceRef(_View):
    """A Service that selects a workload's pods."""

    name: str
    ports: list[ServicePortInfo] = Field(default_factory=list)


class WorkloadInfo(_View):
    namespace: str
    name: str
    kind: WorkloadKind
    replicas: int = 0
    """Desired replicas."""
    ready: int = 0
    """Ready replicas."""
    services: list[ServiceRef] = Field(default_factory=list)
    agent_state: AgentState = "none"
    """none: no agent; injecting: agent config written, pods not yet carrying it;
    ready: every pod runs the agent; partial: some do."""
    intercepts: list[InterceptInfo] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    """The pod template's labels (what Services select on)."""

    @property
    def key(self) -> str:
        """``namespace/kind/name``: unique in a cluster."""
        return f"{self.namespace}/{self.kind}/{self.name}"
