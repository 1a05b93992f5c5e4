"""The main view with Pilot, over core's models.

Covers: the first view (header, namespaces with counts and `0` = all,
workloads with services:ports, agent state and intercept owners, everyone's
intercepts with ours first); digits and `:ns` pick namespaces; `:rs`/`:sts`/
`:deploy`/`:all` switch kinds; `/` filters as you type and esc clears; j/k
move; live reload on a change notice (``ClusterChanged``), never polling, the
header included (the manager may come or go);
the footer shows only keys that apply (leave/env only on our intercepts,
revoke only on others' intercepts (the manager checks admin), login only when
logged out);
`l` leaves, `r` revokes after a confirmation (and `n` does not), `e` writes the
env file, `c` copies; `?` opens help; `q` asks whether to keep intercepts;
`:ctx` switches context; mouse clicks select; bad commands are explained;
failures show in an error modal that can be copied, core's errors by their
title and hint (also from inside a task group's ExceptionGroup), anything
else as a bug to report, never a traceback.
"""

from __future__ import annotations

from dataclasses import replace

from textual.widgets import DataTable

from core.errors import ManagerRefused
from tests.tui.conftest import SIZE, Recorder, app_over, until
from tests.tui.fakes import FakeSource, intercept
from tui import messages as m
from tui.modals.confirm import ConfirmModal
from tui.modals.contexts import ContextModal
from tui.modals.error import ErrorModal
from tui.modals.help import HelpModal
from tui.modals.login import LoginModal
from tui.modals.quit import QuitModal
from tui.widgets.header_bar import HeaderBar, header_text
from tui.widgets.intercepts_pane import InterceptsPane
from tui.widgets.namespace_list import NamespaceList
from tui.widgets.workload_table import WorkloadTable


def two_users() -> list:  # type: ignore[type-arg]
    return [
        intercept("orders-shop", "orders", "alice", "s-alice", headers={"x-dev": "alice"}),
        intercept("bob-orders", "orders", "bob", "s-bob", headers={"x-dev": "bob"},
                  local_port=9090),
    ]  # fmt: skip


def names(table: WorkloadTable) -> list[str]:
    return [w.name for w in table.shown]


def footer_keys(app) -> set[str]:  # type: ignore[no-untyped-def]
    """The actions whose keys the footer shows now."""
    return {
        b.binding.action
        for b in app.screen.active_bindings.values()
        if b.enabled and b.binding.show
    }


async def started(app, pilot) -> WorkloadTable:  # type: ignore[no-untyped-def]
    table = app.main.query_one(WorkloadTable)
    await until(pilot, lambda: table.row_count > 0 and app.main.session is not None)
    return table


async def test_first_view_shows_cluster_session_and_workloads(recorder: Recorder) -> None:
    source = FakeSource(intercepts=two_users())
    app = app_over(source)
    async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
        table = await started(app, pilot)
        pane = app.main.query_one(InterceptsPane)
        await until(pilot, lambda: pane.row_count == 2)
        assert recorder.of(m.SessionKnown) and recorder.of(m.NamespacesLoaded)
        assert recorder.of(m.WorkloadsLoaded) and recorder.of(m.InterceptsLoaded)
        header = str(header_text(source.context, source.info))
        for part in ("waylay-sandbox", "team", "alice", "0.1.0", "healthy"):
            assert part in header
        assert app.main.query_one(HeaderBar).session == source.info
        ns = app.main.query_one(NamespaceList)
        assert [ns.get_option_at_index(i).prompt for i in range(ns.option_count)] == [
            "0 all (6)", "1 billing (2)", "2 metrics (1)", "3 shop (3)"
        ]  # fmt: skip
        assert table.all_namespaces and len(table.shown) == 6
        orders = table.get_row("shop/Deployment/orders")
        assert "orders:80→http" in str(orders) and "ready" in str(orders)
        assert "orders-shop(alice)" in str(orders) and "bob-orders(bob)" in str(orders)
        first = pane.get_row_at(0)
        assert first[1] == "orders-shop" and first[2] == "you"
        assert pane.get_row_at(1)[2] == "bob"


async def test_namespaces_by_digit_and_command(recorder: Recorder) -> None:
    app = app_over(FakeSource())
    async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
        table = await started(app, pilot)
        await pilot.press("3")
        await until(pilot, lambda: not table.all_namespaces)
        assert names(table) == ["catalog", "ledger", "orders"]
        assert any(msg.scope == "shop" for msg in recorder.of(m.WorkloadsLoaded))  # type: ignore[attr-defined]
        await pilot.press("0")
        await until(pilot, lambda: table.all_namespaces)
        await pilot.press("colon", *"ns billing", "enter")
        await until(pilot, lambda: names(table) == ["batch", "legacy-billing"])
        await pilot.press("colon", *"ns nowhere", "enter")
        await until(pilot, lambda: any("no namespace 'nowhere'" in n.message
                                       for n in app._notifications))  # fmt: skip
        await pilot.press("9")
        await until(pilot, lambda: any("no namespace number 9" in n.message
                                       for n in app._notifications))  # fmt: skip


async def test_kind_switch_filter_and_keys() -> None:
    app = app_over(FakeSource())
    async with app.run_test(size=SIZE) as pilot:
        table = await started(app, pilot)
        await pilot.press("colon", *"rs", "enter")
        assert names(table) == ["legacy-billing"]
        await pilot.press("colon", *"sts", "enter")
        assert names(table) == ["ledger"]
        await pilot.press("colon", *"deploy", "enter")
        assert names(table) == ["batch", "statsd", "catalog", "orders"]
        await pilot.press("colon", *"all", "enter")
        assert len(table.shown) == 6
        assert app.focused is table
        await pilot.press("slash", *"ord")
        assert names(table) == ["orders"]  # filters as you type
        await pilot.press("enter")
        assert app.focused is table and names(table) == ["orders"]
        assert "· /ord ·" in str(table.border_title)
        await pilot.press("escape")
        assert len(table.shown) == 6
        await pilot.press("colon", *"bogus", "enter")
        await until(pilot, lambda: any("unknown command" in n.message
                                       for n in app._notifications))  # fmt: skip
        table.move_cursor(row=0)
        await pilot.press("j", "j")
        assert table.cursor_row == 2
        await pilot.press("k")
        assert table.cursor_row == 1


async def test_live_updates_on_change_notice(recorder: Recorder) -> None:
    source = FakeSource()
    app = app_over(source)
    async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
        await started(app, pilot)
        await until(pilot, lambda: source.streaming)
        pane = app.main.query_one(InterceptsPane)
        source._intercepts.extend(two_users())
        source.info = replace(source.info, manager_version="0.2.0")  # e.g. the manager came back
        source.changed()
        await until(pilot, lambda: pane.row_count == 2)
        assert recorder.of(m.ClusterChanged)
        header = app.main.query_one(HeaderBar)
        await until(pilot, lambda: header.session and header.session.manager_version == "0.2.0")


async def test_footer_shows_only_applicable_keys() -> None:
    source = FakeSource(intercepts=two_users())
    app = app_over(source)
    async with app.run_test(size=SIZE) as pilot:
        table = await started(app, pilot)
        pane = app.main.query_one(InterceptsPane)
        await until(pilot, lambda: pane.row_count == 2)
        table.move_cursor(row=table.get_row_index("billing/Deployment/batch"))
        await pilot.pause()
        keys = footer_keys(app)
        assert {"intercept", "filter", "command", "help", "quit"} <= keys
        assert not keys & {"leave", "env_file", "copy", "revoke", "login", "back"}
        table.move_cursor(row=table.get_row_index("shop/Deployment/orders"))
        await pilot.pause()
        assert {"leave", "env_file", "copy"} <= footer_keys(app)
        pane.focus()
        pane.move_cursor(row=1)  # bob's
        await pilot.pause()
        keys = footer_keys(app)
        assert {"copy", "revoke"} <= keys and "leave" not in keys  # someone else's
        pane.move_cursor(row=0)  # ours
        await pilot.pause()
        keys = footer_keys(app)
        assert {"leave", "copy"} <= keys and "revoke" not in keys


async def test_leave_env_and_copy_on_our_intercept(recorder: Recorder) -> None:
    source = FakeSource(intercepts=two_users())
    app = app_over(source)
    async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
        await started(app, pilot)
        pane = app.main.query_one(InterceptsPane)
        await until(pilot, lambda: pane.row_count == 2)
        await pilot.click(InterceptsPane, offset=(4, 2))  # the mouse: first row
        assert app.focused is pane and pane.cursor_row == 0
        await pilot.press("c")
        assert app.clipboard == "x-dev: alice"
        await pilot.press("e")
        await until(pilot, lambda: any(c[0] == "env" for c in source.calls))
        await pilot.press("l")
        await until(pilot, lambda: pane.row_count == 1)
        assert ("leave", "orders-shop") in source.calls
        assert [msg.name for msg in recorder.of(m.InterceptLeft)] == ["orders-shop"]  # type: ignore[attr-defined]


async def test_revoke_asks_first(recorder: Recorder) -> None:
    source = FakeSource(intercepts=two_users())
    app = app_over(source)
    async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
        await started(app, pilot)
        pane = app.main.query_one(InterceptsPane)
        await until(pilot, lambda: pane.row_count == 2)
        pane.focus()
        pane.move_cursor(row=1)
        await pilot.pause()
        assert "revoke" in footer_keys(app)
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmModal)
        assert not any(c[0] == "revoke" for c in source.calls)
        await pilot.press("r", "y")
        await until(pilot, lambda: pane.row_count == 1)
        assert ("revoke", "s-bob:bob-orders") in source.calls
        assert recorder.of(m.InterceptRevoked)


async def test_errors_reach_the_screen_never_a_traceback() -> None:
    source = FakeSource(intercepts=two_users())
    app = app_over(source)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        pane = app.main.query_one(InterceptsPane)
        await until(pilot, lambda: pane.row_count == 2)
        pane.focus()
        source.fail_next = _refused()
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, ErrorModal))
        modal = app.screen
        assert isinstance(modal, ErrorModal)
        assert modal.error_title == "The manager refused"
        assert "Traceback" not in modal.text
        await pilot.press("c")
        assert app.clipboard == modal.text
        await pilot.press("escape")
        assert not isinstance(app.screen, ErrorModal)
        source.fail_next = ExceptionGroup("task group", [_refused()])  # type: ignore[assignment]
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, ErrorModal))
        assert app.screen.error_title == "The manager refused"  # type: ignore[attr-defined]
        await pilot.press("escape")
        source.fail_next = RuntimeError("socket closed")  # type: ignore[assignment]
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, ErrorModal))
        assert isinstance(app.screen, ErrorModal)
        assert "RuntimeError: socket closed" in app.screen.text
        assert "bug in waylay" in app.screen.text


def _refused() -> ManagerRefused:
    return ManagerRefused("conflict", "The manager refused", "held by bob", "pick another port")


async def test_help_login_context_and_quit(recorder: Recorder) -> None:
    source = FakeSource(intercepts=two_users())
    source.info = replace(source.info, logged_in=False)
    app = app_over(source)
    async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
        await started(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpModal)
        rows = app.screen.query_one(DataTable).row_count
        assert rows >= 15
        await pilot.press("escape")
        assert "login" in footer_keys(app)
        await pilot.press("L")
        assert isinstance(app.screen, LoginModal)
        await pilot.press(*"short")
        assert "8+ characters" in str(app.screen.query_one("#login-problem").render())
        await pilot.press(*"-enough-now", "enter")
        await until(pilot, lambda: ("login", "short-enough-now") in source.calls)
        await until(pilot, lambda: recorder.of(m.LoggedIn))
        await until(pilot, lambda: "login" not in footer_keys(app))
        await pilot.press("colon", *"ctx", "enter")
        assert isinstance(app.screen, ContextModal)
        await pilot.press("down", "enter")
        await until(pilot, lambda: ("switch_context", "waylay-sandbox-admin") in source.calls)
        await until(pilot, lambda: recorder.of(m.ContextSwitched))
        await pilot.press("q")
        assert isinstance(app.screen, QuitModal)
        await pilot.press("escape")
        assert not isinstance(app.screen, QuitModal) and app.is_running
        await pilot.press("q", "k")
        await until(pilot, lambda: source.closed is not None)
        assert source.closed is True  # kept running in the daemon


async def test_quit_and_leave_everything() -> None:
    source = FakeSource(intercepts=two_users())
    app = app_over(source)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await until(pilot, lambda: app.main.query_one(InterceptsPane).row_count == 2)
        await pilot.press("q", "l")
        await until(pilot, lambda: source.closed is not None)
        assert source.closed is False
