"""The intercept wizard: one validated step at a time, then progress, then the result.

The steps and their checks come from ``tui.wizard.plan.Wizard``; this screen
only shows them. Text fields validate on every keystroke; choices are picked
from a list. ``enter`` accepts, ``esc`` goes back a step (and out from the
first). While the agent arrives the manager's progress is shown live; the
result gives the header to set, the preview URL and a ``curl`` line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.validation import ValidationResult, Validator
from textual.widgets import DataTable, Footer, Input, Label, Log, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from tui import messages as m
from tui.screens.try_it import try_it
from tui.wizard.plan import Step, Wizard, header_line

if TYPE_CHECKING:
    from tui.app import WaylayApp
    from tui.source import InterceptOutcome

Phase = Literal["asking", "running", "done"]


class StepValidator(Validator):
    """Runs a step's check on every keystroke."""

    def __init__(self, step: Step) -> None:
        super().__init__()
        self.step = step

    def validate(self, value: str) -> ValidationResult:
        problem = self.step.validate(value)
        return self.success() if problem is None else self.failure(problem, value)


class WizardScreen(Screen["InterceptOutcome | None"]):
    BINDINGS = [
        Binding("escape", "back", "back", id="wizard.back"),
        Binding("c", "copy_curl", "copy curl", id="wizard.copy"),
        Binding("u", "copy_url", "copy preview URL", id="wizard.url"),
        Binding("enter", "finish", "done", id="wizard.done"),
    ]

    def __init__(self, wizard: Wizard) -> None:
        super().__init__()
        self.wizard = wizard
        self.step: Step | None = wizard.next_step()
        self.phase: Phase = "asking"
        self.outcome: InterceptOutcome | None = None

    @property
    def waylay(self) -> WaylayApp:
        return cast("WaylayApp", self.app)

    def compose(self) -> ComposeResult:
        w = self.wizard.workload
        yield Label(f" Intercept {w.name} ({w.kind} in {w.namespace})", id="wizard-title")
        with Vertical(id="wizard-body"):
            yield Label("", id="step-count", classes="hint")
            yield Label("", id="question")
            yield OptionList(id="choices")
            yield Input(id="text", validate_on=["changed", "submitted"])
            yield Static("", id="problem", classes="problem", markup=False)
            yield Static("", id="hint", classes="hint", markup=False)
            yield DataTable(id="result", cursor_type="none", show_header=False)
            yield Log(id="progress", auto_scroll=True)
        yield DataTable(id="answers", cursor_type="none", show_header=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#answers", DataTable).add_columns("step", "answer")
        self.query_one("#result", DataTable).add_columns("what", "value")
        self.query_one("#answers", DataTable).border_title = "so far"
        for service in self.wizard.workload.services:
            self.detect_preview(service.name)
        self.show_step()

    # ----------------------------------------------------------------- steps

    def show_step(self) -> None:
        step = self.step
        if step is None:
            return
        steps = self.wizard.steps()
        index = [s.id for s in steps].index(step.id)
        self.query_one("#step-count", Label).update(f"step {index + 1} of {len(steps)}")
        self.query_one("#question", Label).update(step.question)
        self.query_one("#hint", Static).update(step.hint)
        self.query_one("#problem", Static).update("")
        current = self.wizard.answers.get(step.id, step.default)
        choices = self.query_one("#choices", OptionList)
        text = self.query_one("#text", Input)
        choices.display = step.kind == "choice"
        text.display = step.kind == "text"
        if step.kind == "choice":
            choices.set_options([Option(c.label, id=c.value) for c in step.choices])
            values = [c.value for c in step.choices]
            choices.highlighted = values.index(current) if current in values else 0
            choices.focus()
        else:
            text.validators = [StepValidator(step)]
            text.value = current
            text.cursor_position = len(current)
            text.focus()
            self._check(current)
        self._show_answers()
        self.refresh_bindings()

    def _show_answers(self) -> None:
        table = self.query_one("#answers", DataTable)
        table.clear()
        for step in self.wizard.steps():
            if step.id in self.wizard.answers:
                table.add_row(step.id.replace("_", " "), self.wizard.answers[step.id])

    def _check(self, value: str) -> str | None:
        problem = self.step.validate(value) if self.step else None
        self.query_one("#problem", Static).update(problem or "")
        return problem

    def accept(self, value: str) -> None:
        step = self.step
        if step is None or self.phase != "asking":
            return
        problem = self.wizard.set(step.id, value)
        if problem is not None:
            self.query_one("#problem", Static).update(problem)
            return
        steps = self.wizard.steps()
        index = [s.id for s in steps].index(step.id)
        if index + 1 < len(steps):
            self.step = steps[index + 1]
            self.show_step()
        else:
            self.run()

    @on(Input.Changed, "#text")
    def _typed(self, event: Input.Changed) -> None:
        event.stop()
        self._check(event.value)

    @on(Input.Submitted, "#text")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.accept(event.value)

    @on(OptionList.OptionSelected, "#choices")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.accept(event.option.id or "")

    # ------------------------------------------------------- preview defaults

    @work(group="detect", exit_on_error=False)
    async def detect_preview(self, service: str) -> None:
        source = self.waylay.source
        if source is None:
            return
        found = await source.preview_defaults(self.wizard.workload.namespace, service)
        if found is None:
            return
        self.wizard.preview_defaults[service] = found
        step = self.step
        if step is None or self.phase != "asking" or step.id in self.wizard.answers:
            return
        if step.id.startswith(("ingress", "host")):
            self.step = next(s for s in self.wizard.steps() if s.id == step.id)
            self.show_step()

    # ------------------------------------------------------------- running

    def run(self) -> None:
        self.phase = "running"
        for widget_id in ("#choices", "#text", "#hint", "#problem"):
            self.query_one(widget_id).display = False
        self.query_one("#step-count", Label).update("")
        self.query_one("#question", Label).update(f"Creating intercept {self.wizard.name}…")
        log = self.query_one("#progress", Log)
        log.clear()
        log.display = True
        self.set_focus(None)
        self._show_answers()
        self.refresh_bindings()
        self.create_intercept()

    @work(exclusive=True, group="intercept", exit_on_error=False)
    async def create_intercept(self) -> None:
        source = self.waylay.source
        assert source is not None
        spec = self.wizard.spec()

        def progress(text: str) -> None:
            self.post_message(m.InterceptProgress(text))

        outcome = await source.intercept(spec, self.wizard.preview(), progress)
        self.post_message(m.InterceptStarted(outcome))

    @on(m.InterceptProgress)
    def _progress(self, event: m.InterceptProgress) -> None:
        self.query_one("#progress", Log).write_line(event.text)

    @on(m.InterceptStarted)
    def _started(self, event: m.InterceptStarted) -> None:
        event.stop()
        self.outcome = event.outcome
        self.phase = "done"
        info = event.outcome.intercept
        self.query_one("#question", Label).update(f"Intercept {info.spec.name} is {info.state}")
        result = self.query_one("#result", DataTable)
        result.clear()
        result.add_row(
            "routes",
            f"{info.spec.service}:{info.spec.service_port} → "
            f"{info.spec.local_address}:{info.spec.local_port}",
        )
        result.add_row("header", header_line(info.spec))
        result.add_row("preview URL", event.outcome.preview_url or "-")
        line, where = try_it(event.outcome)
        result.add_row("try it" if not where else f"try it ({where})", line)
        for warning in event.outcome.warnings:
            result.add_row("warning", warning)
        result.display = True
        hint = self.query_one("#hint", Static)
        hint.update("enter: back to the main view · c: copy the curl line · u: copy the URL")
        hint.display = True
        self.refresh_bindings()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "intercept" and event.state == WorkerState.ERROR:
            self.phase = "asking"
            self.query_one("#progress", Log).display = False
            for widget_id in ("#hint", "#problem"):
                self.query_one(widget_id).display = True
            self.show_step()
            self.query_one("#problem", Static).update(
                "creating the intercept failed (see the error); change an answer or esc"
            )
        self.waylay.on_worker_state_changed(event)

    # --------------------------------------------------------------- actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("copy_curl", "finish"):
            return self.phase == "done"
        if action == "copy_url":
            return self.phase == "done" and bool(self.outcome and self.outcome.preview_url)
        if action == "back":
            return self.phase != "running"
        return True

    def action_back(self) -> None:
        if self.phase == "done":
            self.dismiss(self.outcome)
            return
        steps = self.wizard.steps()
        ids = [s.id for s in steps]
        index = ids.index(self.step.id) if self.step and self.step.id in ids else 0
        if index == 0:
            self.dismiss(None)
            return
        self.step = steps[index - 1]
        self.show_step()

    def action_finish(self) -> None:
        self.dismiss(self.outcome)

    def action_copy_curl(self) -> None:
        if self.outcome is not None:
            line, _where = try_it(self.outcome)
            self.app.copy_to_clipboard(line)
            self.notify(line, title="copied")

    def action_copy_url(self) -> None:
        if self.outcome is not None and self.outcome.preview_url:
            self.app.copy_to_clipboard(self.outcome.preview_url)
            self.notify(self.outcome.preview_url, title="copied")
