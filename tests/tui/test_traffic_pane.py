"""The live traffic pane.

Covers: events pushed on the source's traffic stream appear as rows (time,
intercept, method, path, status, ms, bytes, routed) through ``TrafficSeen``;
follow mode keeps the newest row selected, `f` pauses and the cursor stays put
while events keep coming; `/` filters the traffic pane when it has focus and
esc clears; enter opens the detail view with redacted headers and, for
unmatched requests, why they missed; a burst beyond the limit keeps only the
newest events; byte counts read as humans write them.
"""

from __future__ import annotations

from core.protocol import TrafficEvent
from tests.tui.conftest import SIZE, Recorder, app_over, until
from tests.tui.fakes import FakeSource, traffic
from tui import messages as m
from tui.modals.traffic_detail import TrafficDetailModal, describe
from tui.widgets.traffic_log import TrafficLog, human_bytes


async def test_traffic_rows_follow_pause_filter_and_detail(recorder: Recorder) -> None:
    source = FakeSource()
    app = app_over(source)
    async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
        log = app.main.query_one(TrafficLog)
        await until(pilot, lambda: source.streaming)
        source.emit(traffic(10))
        await until(pilot, lambda: log.row_count == 10)
        assert len(recorder.of(m.TrafficSeen)) == 10
        first = log.get_row_at(0)
        assert first[0] == "12:00:00.000"
        assert first[1] == "orders-shop"
        assert (first[2], first[3], str(first[4])) == ("POST", "/orders/1000", "503")
        assert str(first[7]) == "→ you"
        assert str(log.get_row_at(1)[7]) == "→ app"
        assert log.cursor_row == 9  # following

        log.focus()
        await pilot.press("f")
        assert not log.following and "paused" in str(log.border_title)
        await pilot.press("k", "k")
        source.emit(traffic(3))
        await until(pilot, lambda: log.row_count == 13)
        assert log.cursor_row == 7  # paused: the cursor stays where it was
        await pilot.press("f")
        assert log.following and log.cursor_row == 12

        await pilot.press("slash", *"1003")
        assert log.row_count == 1
        await pilot.press("enter")
        assert app.focused is log
        await pilot.press("enter")
        assert isinstance(app.screen, TrafficDetailModal)
        detail = app.screen
        event = detail.event
        assert event.path == "/orders/1003" and event.routed == "app"
        summary = dict(describe(event))
        assert summary["why"] == "header x-waylay-intercept-id missing"
        headers = detail.query_one("#detail-headers")
        assert ("cookie", "<redacted>") in [tuple(headers.get_row_at(i)) for i in range(2)]  # type: ignore[attr-defined]
        await pilot.press("escape")
        assert not isinstance(app.screen, TrafficDetailModal)
        await pilot.press("escape")
        assert log.row_count == 13


def test_detail_redacts_even_if_the_agent_did_not() -> None:
    event = TrafficEvent(headers={"Authorization": "Bearer secret", "x-a": "1"})
    rows = describe(event)
    assert ("routed to", "app") in rows
    from core.protocol import redact

    assert redact(event.headers)["Authorization"] == "<redacted>"


async def test_burst_beyond_the_limit_keeps_the_newest() -> None:
    source = FakeSource()
    app = app_over(source)
    async with app.run_test(size=SIZE) as pilot:
        log = app.main.query_one(TrafficLog)
        log.limit = 50
        log.events = log.events.__class__(maxlen=50)
        await until(pilot, lambda: source.streaming)
        source.emit(traffic(120))
        await until(pilot, lambda: log.row_count == 50 and log.get_row_at(49)[3] == "/orders/1119")
        assert len(log.events) == 50
        assert log.get_row_at(0)[3] == "/orders/1070"


def test_human_bytes() -> None:
    assert human_bytes(512) == "512B"
    assert human_bytes(2048) == "2.0K"
    assert human_bytes(5 * 1024 * 1024) == "5.0M"
