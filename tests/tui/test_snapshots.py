"""SVG snapshots of the main states, at a fixed size with fixed data.

Covers: the main view with two users' intercepts and a busy traffic pane;
the `:rs` kind switch with a filter; a wizard text step with a validation
problem; a wizard preview prompt with its detected default; the wizard's
result; the help screen; the error modal; the traffic detail view; the quit
question. Update with ``pytest tests/tui --snapshot-update`` after a change
you have looked at.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual.pilot import Pilot
from textual.widgets import Input

from tests.tui.conftest import SIZE, app_over, until
from tests.tui.fakes import FakeSource, intercept, traffic
from tui.app import WaylayApp
from tui.screens.wizard import WizardScreen
from tui.widgets.header_bar import HeaderBar
from tui.widgets.intercepts_pane import InterceptsPane
from tui.widgets.traffic_log import TrafficLog
from tui.widgets.workload_table import WorkloadTable

Before = Callable[[Pilot[None]], Awaitable[None]]
BUSY = 14


def busy_app() -> tuple[WaylayApp, FakeSource]:
    source = FakeSource(
        intercepts=[
            intercept("orders-shop", "orders", "alice", "s-alice", headers={"x-dev": "alice"}),
            intercept("bob-orders", "orders", "bob", "s-bob", headers={"x-dev": "bob"},
                      local_port=9090, preview_url="https://p-77c1.shop.example.test"),
        ]
    )  # fmt: skip
    return app_over(source), source


def ready(app: WaylayApp, source: FakeSource, then: Before | None = None) -> Before:
    async def before(pilot: Pilot[None]) -> None:
        table = app.main.query_one(WorkloadTable)
        pane = app.main.query_one(InterceptsPane)
        await until(
            pilot,
            lambda: (
                table.row_count == len(source._workloads)
                and pane.row_count == len(source._intercepts)
                and app.main.query_one(HeaderBar).session is not None
                and source.streaming
            ),
        )
        # fewer rows than the pane shows: no scrollbar whose position depends on timing
        source.emit(traffic(BUSY))
        log = app.main.query_one(TrafficLog)
        await until(pilot, lambda: log.row_count == BUSY and log.cursor_row == BUSY - 1)
        if then is not None:
            await then(pilot)
        for field in app.screen.query(Input):
            field.cursor_blink = False
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
        await pilot.pause()

    return before


def on_workload(app: WaylayApp, key: str, *keys: str) -> Before:
    async def go(pilot: Pilot[None]) -> None:
        table = app.main.query_one(WorkloadTable)
        table.move_cursor(row=table.get_row_index(key))
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, WizardScreen))
        for field in app.screen.query(Input):
            field.cursor_blink = False
        await pilot.press(*keys)

    return go


def test_main_view(snap_compare) -> None:  # type: ignore[no-untyped-def]
    app, source = busy_app()
    assert snap_compare(app, terminal_size=SIZE, run_before=ready(app, source))


def test_kind_switch_and_filter(snap_compare) -> None:  # type: ignore[no-untyped-def]
    app, source = busy_app()

    async def switch(pilot: Pilot[None]) -> None:
        await pilot.press("colon", *"deploy", "enter", "slash", *"or", "enter")

    assert snap_compare(app, terminal_size=SIZE, run_before=ready(app, source, switch))


def test_wizard_invalid_local_port(snap_compare) -> None:  # type: ignore[no-untyped-def]
    app, source = busy_app()
    go = on_workload(app, "shop/Deployment/catalog", "enter", "enter", "backspace", "x")
    assert snap_compare(app, terminal_size=SIZE, run_before=ready(app, source, go))


def test_wizard_preview_prompt(snap_compare) -> None:  # type: ignore[no-untyped-def]
    app, source = busy_app()
    go = on_workload(app, "shop/Deployment/orders", *["enter"] * 6)
    assert snap_compare(app, terminal_size=SIZE, run_before=ready(app, source, go))


def test_wizard_result(snap_compare) -> None:  # type: ignore[no-untyped-def]
    app, source = busy_app()
    inner = on_workload(app, "shop/Deployment/orders", *["enter"] * 9)

    async def go(pilot: Pilot[None]) -> None:
        await inner(pilot)
        await until(pilot, lambda: getattr(app.screen, "phase", "") == "done")

    assert snap_compare(app, terminal_size=SIZE, run_before=ready(app, source, go))


def test_help(snap_compare) -> None:  # type: ignore[no-untyped-def]
    app, source = busy_app()

    async def go(pilot: Pilot[None]) -> None:
        await pilot.press("question_mark")

    assert snap_compare(app, terminal_size=SIZE, run_before=ready(app, source, go))


def test_error_modal(snap_compare) -> None:  # type: ignore[no-untyped-def]
    app, source = busy_app()

    async def go(pilot: Pilot[None]) -> None:
        await pilot.press("i")  # billing/batch is first: it has no Service

    assert snap_compare(app, terminal_size=SIZE, run_before=ready(app, source, go))


def test_traffic_detail(snap_compare) -> None:  # type: ignore[no-untyped-def]
    app, source = busy_app()

    async def go(pilot: Pilot[None]) -> None:
        app.main.query_one(TrafficLog).focus()
        await pilot.press("f", "k", "enter")

    assert snap_compare(app, terminal_size=SIZE, run_before=ready(app, source, go))


def test_quit_question(snap_compare) -> None:  # type: ignore[no-untyped-def]
    app, source = busy_app()

    async def go(pilot: Pilot[None]) -> None:
        await pilot.press("q")

    assert snap_compare(app, terminal_size=SIZE, run_before=ready(app, source, go))
