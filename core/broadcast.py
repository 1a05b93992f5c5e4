"""One stream of items fanned out to any number of subscribers.

Discovery changes, manager events and traffic events all flow this way: the
publisher never waits, and a subscriber that falls behind its bounded buffer
loses items rather than stalling everyone else. Each subscriber may carry a
tag that ``publish(..., to=...)`` filters on (e.g. "also wants others' traffic").
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectSendStream

__all__ = ["Broadcast"]

T = TypeVar("T")


class Broadcast(Generic[T]):
    def __init__(self, buffer: int) -> None:
        self._buffer = buffer
        self._subscribers: list[tuple[MemoryObjectSendStream[T], Any]] = []

    def __len__(self) -> int:
        return len(self._subscribers)

    def publish(self, item: T, *, to: Callable[[Any], bool] | None = None) -> None:
        """Hand ``item`` to every subscriber (whose tag ``to`` accepts), never waiting."""
        for send, tag in list(self._subscribers):
            if to is None or to(tag):
                with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError):
                    send.send_nowait(item)

    async def subscribe(self, tag: Any = None) -> AsyncIterator[T]:
        """Items published from now on, until ``close`` or the caller stops iterating."""
        send, receive = anyio.create_memory_object_stream[T](self._buffer)
        entry = (send, tag)
        self._subscribers.append(entry)
        try:
            async with receive:
                async for item in receive:
                    yield item
        finally:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(entry)
            send.close()

    def close(self) -> None:
        """End every subscription (their iterations finish)."""
        for send, _tag in self._subscribers:
            send.close()
        self._subscribers.clear()
