"""The intercept wizard with Pilot, from `i` to the result.

Covers: `i` (and enter on a workload) opens the wizard; a service and a port
are chosen from lists when several; the local port validates as you type
(the problem shows, enter refuses, fixing it clears the problem); personal,
auto headers, path, preview yes; the four preview prompts come with the
detected defaults (ingress, TLS, port from TLS, hostname); esc goes back a
step keeping the answer; progress lines arrive live; the result shows the
header, the preview URL and a curl line, `c` copies it; enter returns to the
main view with ``InterceptStarted`` and the new intercept listed; a refused
intercept shows the error and returns to the last step; a workload without a
Service explains why it cannot be intercepted; single-user mode proposes a
global intercept in two steps.
"""

from __future__ import annotations

from textual.widgets import Input, Log, OptionList, Static

from core.errors import ManagerRefused
from core.protocol import AUTO_HEADER
from tests.tui.conftest import SIZE, Recorder, app_over, until
from tests.tui.fakes import FakeSource
from tui import messages as m
from tui.modals.error import ErrorModal
from tui.screens.wizard import WizardScreen
from tui.widgets.intercepts_pane import InterceptsPane
from tui.widgets.workload_table import WorkloadTable


async def open_on(app, pilot, key: str) -> WizardScreen:  # type: ignore[no-untyped-def]
    table = app.main.query_one(WorkloadTable)
    await until(pilot, lambda: table.row_count > 0 and app.main.session is not None)
    table.move_cursor(row=table.get_row_index(key))
    await pilot.press("i")
    await until(pilot, lambda: isinstance(app.screen, WizardScreen))
    return app.screen  # type: ignore[no-any-return]


def problem(screen: WizardScreen) -> str:
    return str(screen.query_one("#problem", Static).render())


async def test_full_personal_intercept_with_preview(recorder: Recorder) -> None:
    source = FakeSource()
    app = app_over(source)
    async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
        wizard = await open_on(app, pilot, "shop/Deployment/catalog")
        assert wizard.step is not None and wizard.step.id == "service"
        assert app.focused is wizard.query_one("#choices", OptionList)
        await pilot.press("enter")  # catalog
        assert wizard.step.id == "port"
        await pilot.press("down", "enter")  # grpc 9090
        assert wizard.step.id == "local_port"
        text = wizard.query_one("#text", Input)
        assert text.value == "9090"
        await pilot.press("backspace", "backspace", "backspace", "backspace", *"9x")
        assert "not a number" in problem(wizard)
        await pilot.press("enter")
        assert wizard.step.id == "local_port"  # refused
        await pilot.press("backspace", *"001")
        assert problem(wizard) == ""
        await pilot.press("enter")
        assert wizard.step.id == "scope"
        await pilot.press("enter")  # team default: personal
        assert wizard.wizard.answers["scope"] == "personal"
        assert text.value == "auto"
        await pilot.press("enter")
        await pilot.press("ctrl+u", *"api")
        assert "starts with '/'" in problem(wizard)
        await pilot.press("home", "slash", "enter")
        assert wizard.step.id == "preview"
        await pilot.press("escape")  # back one step keeps the answer
        assert wizard.step.id == "path" and text.value == "/api"
        await pilot.press("enter", "enter")  # path, preview: yes
        assert wizard.step.id == "ingress_host"
        assert text.value == "ingress-nginx.ingress"  # detected
        await pilot.press("enter")
        assert wizard.step.id == "ingress_tls"
        await pilot.press("enter")  # yes (detected)
        assert text.value == "443"
        await pilot.press("enter")
        assert wizard.step.id == "hostname" and text.value == "shop.example.test"
        await pilot.press("enter")

        await until(pilot, lambda: wizard.phase == "done")
        progress = wizard.query_one("#progress", Log)
        assert "agent ready in 3/3 pods" in "\n".join(progress.lines)
        assert len(recorder.of(m.InterceptProgress)) == 2
        spec, preview = next(c[1] for c in source.calls if c[0] == "intercept")  # type: ignore[misc]
        assert (spec.service, spec.service_port, spec.local_port) == ("catalog", 9090, 9001)
        assert spec.headers == {AUTO_HEADER: "s-alice:catalog-shop"}
        assert spec.path.value == "/api"
        assert (preview.host, preview.port, preview.tls) == ("ingress-nginx.ingress", 443, True)
        result = {row[0]: row[1] for row in map(wizard.query_one("#result").get_row_at, range(4))}  # type: ignore[attr-defined]
        assert result["preview URL"] == "https://p-3f9a.shop.example.test"
        assert result["try it"] == "curl https://p-3f9a.shop.example.test/api"
        assert result["header"] == f"{AUTO_HEADER}: s-alice:catalog-shop"
        await pilot.press("c")
        assert app.clipboard == "curl https://p-3f9a.shop.example.test/api"
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, WizardScreen))
        pane = app.main.query_one(InterceptsPane)
        await until(pilot, lambda: pane.row_count == 1)
        assert pane.get_row_at(0)[1] == "catalog-shop"
        assert recorder.of(m.InterceptStarted)


async def test_single_user_global_in_two_steps_and_enter_opens() -> None:
    source = FakeSource(mode="single-user")
    app = app_over(source)
    async with app.run_test(size=SIZE) as pilot:
        table = app.main.query_one(WorkloadTable)
        await until(pilot, lambda: table.row_count > 0 and app.main.session is not None)
        table.move_cursor(row=table.get_row_index("shop/Deployment/orders"))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, WizardScreen))
        wizard = app.screen
        assert isinstance(wizard, WizardScreen)
        assert [s.id for s in wizard.wizard.steps()] == ["local_port", "scope"]
        await pilot.press("enter", "enter")
        await until(pilot, lambda: wizard.phase == "done")
        spec = wizard.outcome.intercept.spec  # type: ignore[union-attr]
        assert spec.is_global and spec.local_port == 80
        result = {row[0]: row[1] for row in map(wizard.query_one("#result").get_row_at, range(4))}  # type: ignore[attr-defined]
        assert result["header"].startswith("none")
        assert result["try it (from a pod in the cluster)"] == "curl http://orders.shop:80/"
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, WizardScreen))


async def test_refused_intercept_returns_to_the_last_step() -> None:
    source = FakeSource(mode="single-user")
    source.fail_next = ManagerRefused(
        "conflict", "Port 80 of orders is intercepted by bob", "global intercepts are exclusive",
        "ask bob to leave, or use a personal intercept",
    )  # fmt: skip
    app = app_over(source)
    async with app.run_test(size=SIZE) as pilot:
        wizard = await open_on(app, pilot, "shop/Deployment/orders")
        await pilot.press("enter", "enter")
        await until(pilot, lambda: isinstance(app.screen, ErrorModal))
        assert "intercepted by bob" in app.screen.text  # type: ignore[attr-defined]
        await pilot.press("escape")
        assert app.screen is wizard and wizard.phase == "asking"
        assert wizard.step is not None and wizard.step.id == "scope"
        assert "failed" in problem(wizard)
        await pilot.press("escape", "escape")
        await until(pilot, lambda: not isinstance(app.screen, WizardScreen))


async def test_workload_without_service_explains() -> None:
    app = app_over(FakeSource())
    async with app.run_test(size=SIZE) as pilot:
        table = app.main.query_one(WorkloadTable)
        await until(pilot, lambda: table.row_count > 0 and app.main.session is not None)
        table.move_cursor(row=table.get_row_index("billing/Deployment/batch"))
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, ErrorModal))
        assert "No Service selects batch" in app.screen.text  # type: ignore[attr-defined]
