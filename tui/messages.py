"""App-level messages: things that happened, posted by workers to the app.

Widget-local messages live in their widgets (``WorkloadTable.Picked``); these
carry what core reported. Bursty ones implement ``can_replace`` so a burst of
change notices costs one reload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from core.models import NamespaceInfo, WorkloadInfo
    from core.protocol import InterceptInfo, TrafficEvent
    from tui.source import InterceptOutcome, SessionInfo


@dataclass
class SessionKnown(Message):
    """The manager told us who we are (or the manager is unreachable)."""

    session: SessionInfo


@dataclass
class NamespacesLoaded(Message):
    namespaces: list[NamespaceInfo]


@dataclass
class WorkloadsLoaded(Message):
    scope: str | None
    """The namespace listed, None for all."""
    workloads: list[WorkloadInfo]


@dataclass
class InterceptsLoaded(Message):
    intercepts: list[InterceptInfo]


@dataclass
class ClusterChanged(Message):
    """Something in the cluster changed; one pending notice stands for many."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ClusterChanged)


@dataclass
class TrafficSeen(Message):
    """Traffic events, batched by the stream reader."""

    events: list[TrafficEvent]


@dataclass
class InterceptProgress(Message):
    text: str


@dataclass
class InterceptStarted(Message):
    outcome: InterceptOutcome


@dataclass
class InterceptLeft(Message):
    name: str


@dataclass
class InterceptRevoked(Message):
    intercept_id: str


@dataclass
class ContextSwitched(Message):
    name: str


@dataclass
class LoggedIn(Message):
    session: SessionInfo
