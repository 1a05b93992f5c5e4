"""What the CLI/TUI and the per-user daemon say to each other.

One JSON object per line over a Unix socket only the user can open. The
client sends ``DaemonRequest``; the daemon answers each with zero or more
``DaemonProgress`` lines and then exactly one ``DaemonReply`` with the same
id. A ``subscribe`` request (traffic, intercept changes) gets a reply and
then ``DaemonPush`` lines until the connection closes. The first request on
a connection must be ``hello``; a daemon whose major version differs answers
with the ``version-skew`` error and the client tells the user to run
``waylay quit``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.daemon_line import socket_path

__all__ = [
    "DaemonError",
    "DaemonProgress",
    "DaemonPush",
    "DaemonReply",
    "DaemonRequest",
    "Op",
    "socket_path",
]

Op = Literal[
    "hello",
    "status",
    "intercept",
    "leave",
    "intercepts",
    "env",
    "session",
    "revoke",
    "subscribe",
    "quit",
]


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DaemonRequest(_Line):
    id: int
    op: Op
    params: dict[str, Any] = Field(default_factory=dict)


class DaemonError(_Line):
    code: str
    title: str
    detail: str = ""
    hint: str = ""
    severity: Literal["error", "warning"] = "error"


class DaemonReply(_Line):
    kind: Literal["reply"] = "reply"
    id: int
    ok: bool
    result: Any = None
    error: DaemonError | None = None
    warnings: list[DaemonError] = Field(default_factory=list)
    """Things the user must read that did not stop the operation (NothingListening)."""


class DaemonProgress(_Line):
    kind: Literal["progress"] = "progress"
    id: int
    message: str


class DaemonPush(_Line):
    kind: Literal["push"] = "push"
    topic: Literal["traffic", "intercept", "session"]
    data: dict[str, Any]
