"""waylay core: the library behind the TUI and the CLI.

The public surface is what ``__all__`` lists (pinned by a test): the view
models, the error hierarchy and live discovery. Everything else is reached
through its module (``core.kube``, ``core.spec``, ...).
"""

from __future__ import annotations

import importlib
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

if TYPE_CHECKING:
    from core.discovery import Change, Discovery
    from core.models import (
        AgentState,
        ContextInfo,
        NamespaceInfo,
        ServicePortInfo,
        ServiceRef,
        WorkloadInfo,
        WorkloadKind,
    )

_LAZY = {
    # Discovery pulls in the kubernetes client, the view models pydantic: agents,
    # the manager and the CLI's fast paths should not pay for what they do not use.
    "Change": "core.discovery",
    "Discovery": "core.discovery",
    "AgentState": "core.models",
    "ContextInfo": "core.models",
    "NamespaceInfo": "core.models",
    "ServicePortInfo": "core.models",
    "ServiceRef": "core.models",
    "WorkloadInfo": "core.models",
    "WorkloadKind": "core.models",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
