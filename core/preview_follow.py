"""Keep the workstation's preview URLs in step with the intercepts they belong to.

``await end_with_intercepts(server, session.events())`` (run it as a task
next to the preview server): every ``intercept`` event whose state is
``removed`` or ``failed`` (left, revoked by an admin, expired with the
session, refused on resume) kills that intercept's preview URLs at once, and a
closed ``session`` event kills all of that session's.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Protocol

from core.preview_models import PreviewEntry
from core.protocol import Event

__all__ = ["PreviewOwner", "end_with_intercepts", "ended_intercept"]


class PreviewOwner(Protocol):
    def end_intercept(self, intercept_id: str) -> list[PreviewEntry]: ...

    def entries(self, intercept_id: str | None = None) -> list[PreviewEntry]: ...


def ended_intercept(event: Event) -> str | None:
    """The id of the intercept an event says has ended, if it says so."""
    if event.kind == "intercept" and event.data.get("state") in ("removed", "failed"):
        return str(event.data.get("id", "")) or None
    return None


async def end_with_intercepts(server: PreviewOwner, events: AsyncIterable[Event]) -> None:
    """Runs until ``events`` ends."""
    async for event in events:
        ended = ended_intercept(event)
        if ended:
            server.end_intercept(ended)
        elif event.kind == "session" and event.data.get("state") == "closed":
            prefix = f"{event.data.get('id', '')}:"
            for intercept_id in {e.intercept_id for e in server.entries()}:
                if intercept_id.startswith(prefix):
                    server.end_intercept(intercept_id)
