"""core.broadcast: one publisher, many subscribers.

Covers: every subscriber gets items published after it subscribed; `to=`
filters on the subscriber's tag; a full buffer drops items for that subscriber
only; `close` ends every subscription; a finished subscriber is forgotten.
"""

from __future__ import annotations

import anyio

from core.broadcast import Broadcast


async def _take(feed: Broadcast[int], n: int, out: list[int], tag: object = None) -> None:
    async for item in feed.subscribe(tag):
        out.append(item)
        if len(out) == n:
            return


async def test_fan_out_filter_drop_and_close() -> None:
    feed: Broadcast[int] = Broadcast(2)
    everyone: list[int] = []
    tagged: list[int] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_take, feed, 2, everyone)
        tg.start_soon(_take, feed, 1, tagged, True)
        with anyio.fail_after(5):
            while len(feed) < 2:
                await anyio.sleep(0.01)
        feed.publish(1, to=lambda tag: not tag)
        feed.publish(2, to=bool)
        feed.publish(3)
    assert everyone == [1, 3]
    assert tagged == [2]
    assert len(feed) == 0


async def test_a_full_buffer_drops_and_close_ends() -> None:
    feed: Broadcast[int] = Broadcast(1)
    got: list[int] = []

    async def slow() -> None:
        async for item in feed.subscribe():
            got.append(item)

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow)
        with anyio.fail_after(5):
            while len(feed) < 1:
                await anyio.sleep(0.01)
        # the waiting subscriber takes one at once and its buffer holds one more;
        # the rest are dropped for it rather than blocking the publisher
        for n in range(5):
            feed.publish(n)
        feed.close()
    assert got == [0, 1]
