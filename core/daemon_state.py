"""The daemon's note of its manager sessions, so a successor can clean up.

A daemon that dies without ``waylay quit`` (SIGKILL, a crash, a reboot of the
laptop's session) leaves its intercepts in the manager until the session's
heartbeat times out. The note (``sessions.json`` beside the socket, 0600)
names each session it opened; the next daemon resumes those sessions and
removes what they still hold, so nothing is left half-alive and the same
port can be intercepted again at once. ``waylay quit`` deletes the note.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["SessionNote", "SessionRecord"]


class SessionRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    context: str | None
    """The context as the client named it (the daemon's key for the session)."""
    kubeconfig: str | None
    session_id: str


class _Note(BaseModel):
    sessions: list[SessionRecord] = []


class SessionNote:
    """``sessions.json`` in the daemon's directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> list[SessionRecord]:
        try:
            return _Note.model_validate_json(self.path.read_bytes()).sessions
        except (OSError, ValidationError, ValueError):
            return []  # missing or torn: nothing to clean up (the manager's TTL still is)

    def take(self) -> list[SessionRecord]:
        """What a previous daemon left behind; the note is emptied."""
        found = self._read()
        self.clear()
        return found

    def add(self, record: SessionRecord) -> None:
        kept = [
            r
            for r in self._read()
            if (r.context, r.kubeconfig) != (record.context, record.kubeconfig)
        ]
        data = _Note(sessions=[*kept, record]).model_dump(mode="json")
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(data))
        os.replace(tmp, self.path)

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
