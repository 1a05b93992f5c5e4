"""What the TUI needs from core, as one protocol.

The app talks to a ``ClusterSource``; ``tui.core_source`` implements it over
``core`` (discovery, the user daemon, preview URLs). Keeping the seam this
narrow lets the screens be written and tested against core's models alone.
Every method may raise a ``core.errors`` error (it has ``.title`` and
``.hint``); the app shows those, never a traceback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from core.models import ContextInfo, NamespaceInfo, WorkloadInfo
    from core.preview import PreviewDefaults, PreviewTarget
    from core.protocol import InterceptInfo, InterceptSpec, TrafficEvent


@dataclass(frozen=True)
class SessionInfo:
    """Who we are to the traffic manager, shown in the header."""

    mode: Literal["single-user", "team"]
    identity: str
    session_id: str
    manager_version: str
    healthy: bool
    logged_in: bool = True
    problem: Exception | None = None
    """Why the manager cannot be reached: a core error with ``title`` and ``hint``."""

    @property
    def manager_missing(self) -> bool:
        """The traffic manager is not installed in this cluster (a calm, fixable state)."""
        code = getattr(self.problem, "remote_code", None) or getattr(self.problem, "code", "")
        return code == "manager-missing"


@dataclass(frozen=True)
class InterceptOutcome:
    """What the wizard's result step shows."""

    intercept: InterceptInfo
    preview_url: str | None = None
    warnings: tuple[str, ...] = ()
    """Things to read that did not stop it (e.g. nothing listens on the local port yet)."""
    cluster_ip: str | None = None
    """The Service's clusterIP when this machine can reach it (the sandbox's are
    loopback addresses), so the "try it" line can go straight to it."""


ProgressFn = Callable[[str], None]


class ClusterSource(Protocol):
    keeps_intercepts: bool
    """Whether ``close(keep_intercepts=True)`` leaves them running (a daemon holds them)."""

    async def run(self) -> None:
        """Keep background connections (the manager session) alive until cancelled."""
        ...

    @property
    def context(self) -> ContextInfo: ...

    def contexts(self) -> list[str]: ...

    async def switch_context(self, name: str) -> ClusterSource: ...

    async def session(self) -> SessionInfo: ...

    async def namespaces(self) -> list[NamespaceInfo]: ...

    async def workloads(self, namespace: str | None) -> list[WorkloadInfo]: ...

    def changes(self) -> AsyncIterator[object]:
        """One notice per change to namespaces, workloads, agents or intercepts."""
        ...

    def traffic(self, *, watch_all: bool = False) -> AsyncIterator[TrafficEvent]:
        """Our intercepts' traffic events; with ``watch_all`` also every other request
        and connection through the agents, as metadata (no headers) with why it missed."""
        ...

    async def intercepts(self) -> list[InterceptInfo]:
        """Everyone's intercepts (the manager's registry)."""
        ...

    async def preview_defaults(self, namespace: str, service: str) -> PreviewDefaults | None: ...

    async def intercept(
        self, spec: InterceptSpec, preview: PreviewTarget | None, progress: ProgressFn
    ) -> InterceptOutcome: ...

    async def leave(self, name: str) -> None: ...

    async def revoke(self, intercept_id: str) -> None: ...

    async def write_env_file(self, name: str, path: Path) -> Path: ...

    async def login(self, api_key: str) -> SessionInfo: ...

    async def close(self, *, keep_intercepts: bool) -> None: ...
