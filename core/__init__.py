"""waylay core: the library behind the TUI and the CLI.

The public surface is what ``__all__`` lists (pinned by a test): the view
models, the error hierarchy and live discovery. Everything else is reached
through its module (``core.kube``, ``core.spec``, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.errors import (
    AgentNotArriving,
    AmbiguousPort,
    ClusterError,
    ContextUnreachable,
    DaemonUnavailable,
    InvalidSpec,
    KeyringUnavailable,
    KubeApiError,
    LocalError,
    ManagerError,
    ManagerMissing,
    ManagerRefused,
    NoKubeconfig,
    NoMatchingService,
    NothingListening,
    NotLoggedIn,
    PortHeld,
    RbacDenied,
    ResolveError,
    SeveralServices,
    UnknownContext,
    UnknownWorkload,
    VersionSkew,
    WaylayError,
)
from core.models import (
    AgentState,
    ContextInfo,
    NamespaceInfo,
    ServicePortInfo,
    ServiceRef,
    WorkloadInfo,
    WorkloadKind,
)

if TYPE_CHECKING:
    from core.discovery import Change, Discovery


def __getattr__(name: str) -> Any:
    # Discovery pulls in the kubernetes client; agents and the manager, which
    # import core.protocol, should not pay for it.
    if name in ("Change", "Discovery"):
        from core import discovery

        return getattr(discovery, name)
    raise AttributeError(f"module 'core' has no attribute {name!r}")


__all__ = [
    "AgentNotArriving",
    "AgentState",
    "AmbiguousPort",
    "Change",
    "ClusterError",
    "ContextInfo",
    "ContextUnreachable",
    "DaemonUnavailable",
    "Discovery",
    "InvalidSpec",
    "KeyringUnavailable",
    "KubeApiError",
    "LocalError",
    "ManagerError",
    "ManagerMissing",
    "ManagerRefused",
    "NamespaceInfo",
    "NoKubeconfig",
    "NoMatchingService",
    "NotLoggedIn",
    "NothingListening",
    "PortHeld",
    "RbacDenied",
    "ResolveError",
    "ServicePortInfo",
    "ServiceRef",
    "SeveralServices",
    "UnknownContext",
    "UnknownWorkload",
    "VersionSkew",
    "WaylayError",
    "WorkloadInfo",
    "WorkloadKind",
]
