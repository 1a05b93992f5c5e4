"""The traffic pane's "mine / all traffic through the agents" switch.

Covers: `a` is offered in the footer only while the traffic pane has focus,
as "all traffic" when showing ours and "mine only" when showing all; pressing
it asks the source for a feed with ``watch_all`` (replacing the running feed)
and the pane title says which; an unmatched request from the watch-all feed
shows as "→ app" and its detail says why it missed; pressing `a` again goes
back to our own feed (the watch-all feed is closed) and the title says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from core.protocol import TrafficEvent
from tests.tui.conftest import SIZE, Recorder, app_over, until
from tests.tui.fakes import FakeSource
from tui import messages as m
from tui.modals.traffic_detail import TrafficDetailModal, describe
from tui.widgets.traffic_log import TrafficLog
from tui.widgets.workload_table import WorkloadTable

REASON = "header x-dev: 'carol' does not match 'alice'"


class WatchingSource(FakeSource):
    """A FakeSource whose traffic feeds remember whether they watch all, and when they end."""

    def __init__(self) -> None:
        super().__init__()
        self.feeds: dict[bool, list[MemoryObjectSendStream[TrafficEvent]]] = {False: [], True: []}
        self.asked: list[bool] = []

    async def traffic(self, *, watch_all: bool = False) -> AsyncIterator[TrafficEvent]:  # type: ignore[override]
        self.asked.append(watch_all)
        send, receive = anyio.create_memory_object_stream[TrafficEvent](100)
        self.feeds[watch_all].append(send)
        self._traffic.append(send)  # keeps FakeSource.streaming meaningful
        try:
            async with receive:
                async for event in receive:
                    yield event
        finally:
            self.feeds[watch_all].remove(send)
            self._traffic.remove(send)

    def push(self, watch_all: bool, event: TrafficEvent) -> None:
        for send in self.feeds[watch_all]:
            send.send_nowait(event)


def offered(app: object, action: str) -> str | None:
    screen = app.main  # type: ignore[attr-defined]
    for _key, active in screen.active_bindings.items():
        if active.binding.action == action and active.enabled:
            return str(active.binding.description)
    return None


async def test_a_toggles_mine_and_all_traffic(recorder: Recorder) -> None:
    source = WatchingSource()
    app = app_over(source)
    async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
        log = app.main.query_one(TrafficLog)
        await until(pilot, lambda: source.streaming and source.feeds[False])
        assert source.asked == [False]
        assert "(mine)" in str(log.border_title)

        app.main.query_one(WorkloadTable).focus()
        await pilot.pause()
        assert offered(app, "watch_all(True)") is None  # only while the pane has focus
        await pilot.press("a")
        assert source.asked == [False]

        log.focus()
        await pilot.pause()
        assert offered(app, "watch_all(True)") == "all traffic"
        assert offered(app, "watch_all(False)") is None
        await pilot.press("a")
        await until(pilot, lambda: source.feeds[True] and not source.feeds[False])
        assert source.asked == [False, True]
        assert "(all through the agents)" in str(log.border_title)
        assert offered(app, "watch_all(False)") == "mine only"
        assert offered(app, "watch_all(True)") is None

        source.push(
            True,
            TrafficEvent(
                pod="orders-1", protocol="http", method="GET", path="/missed", reason=REASON
            ),
        )
        await until(pilot, lambda: log.row_count == 1)
        assert len(recorder.of(m.TrafficSeen)) == 1
        row = log.get_row_at(0)
        assert (row[1], row[3], str(row[7])) == ("-", "/missed", "→ app")
        await pilot.press("enter")
        assert isinstance(app.screen, TrafficDetailModal)
        assert dict(describe(app.screen.event))["why"] == REASON
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main)

        log.focus()
        await pilot.pause()
        await pilot.press("a")
        await until(pilot, lambda: source.feeds[False] and not source.feeds[True])
        assert source.asked == [False, True, False]
        assert "(mine)" in str(log.border_title)
        assert offered(app, "watch_all(True)") == "all traffic"
