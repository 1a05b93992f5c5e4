"""``sandbox.tasks.cancel_and_wait``, how the kubelet, pod workers and server stop.

Covers: every task is cancelled and has ended on return; a task that had
already failed, one that fails while being cancelled, and one that finished
normally do not stop the others from being waited for, and nothing is raised.
"""

from __future__ import annotations

import asyncio

import anyio

from sandbox.tasks import cancel_and_wait


async def test_cancels_and_waits_for_every_task_whatever_they_raise() -> None:
    cleaned: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append("forever")

    async def broken_on_the_way_out() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append("broken")
            raise RuntimeError("failed while stopping")

    async def failed_already() -> None:
        raise ValueError("failed before the shutdown")

    async def done() -> None:
        return None

    tasks = [
        asyncio.create_task(failed_already()),
        asyncio.create_task(done()),
        asyncio.create_task(broken_on_the_way_out()),
        asyncio.create_task(forever()),
    ]
    await asyncio.sleep(0)  # let every task start
    with anyio.fail_after(5):
        await cancel_and_wait(tasks)
    assert all(t.done() for t in tasks)
    assert sorted(cleaned) == ["broken", "forever"]
    assert tasks[3].cancelled()
    assert isinstance(tasks[2].exception(), RuntimeError)
