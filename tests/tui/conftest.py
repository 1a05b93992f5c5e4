"""Shared helpers for the TUI tests: the app over a source, and condition waits."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
from textual.message import Message
from textual.pilot import Pilot

from tests.sandbox.conftest import sandbox  # noqa: F401  (the real cluster, session-wide)
from tests.tui.fakes import FakeSource
from tui.app import WaylayApp
from tui.source import ClusterSource

SIZE = (140, 42)


def app_over(source: ClusterSource) -> WaylayApp:
    async def connect() -> ClusterSource:
        return source

    return WaylayApp(connect)


async def until(
    pilot: Pilot[None], condition: Callable[[], object], *, timeout: float = 10
) -> None:
    """Let the app run until ``condition()`` is true; fail after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not condition():
            await pilot.pause(0.02)


class Recorder:
    """A ``message_hook`` that keeps every message the app processes."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def of(self, kind: type[Message]) -> list[Message]:
        """Each message of ``kind`` once (a bubbling message is processed by several nodes)."""
        seen: dict[int, Message] = {}
        for message in self.messages:
            if isinstance(message, kind):
                seen.setdefault(id(message), message)
        return list(seen.values())


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
