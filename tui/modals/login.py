"""Team-mode login: an API key, masked, handed to core to check and store."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.validation import Function
from textual.widgets import Footer, Input, Label, Static


def _plausible_key(value: str) -> bool:
    return len(value.strip()) >= 8 and not any(c.isspace() for c in value.strip())


class LoginModal(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "cancel", id="login.cancel")]

    def __init__(self, context: str) -> None:
        super().__init__()
        self.context = context

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box", id="login-box"):
            yield Label(f"Log in to {self.context}", classes="modal-title")
            yield Static(
                "Paste the API key a cluster admin issued you (`waylay apikey create`). "
                "It is checked by the traffic manager and kept in your keyring.",
                classes="hint",
            )
            yield Input(
                placeholder="API key",
                password=True,
                id="login-key",
                validators=[Function(_plausible_key, "an API key is 8+ characters, no spaces")],
                validate_on=["changed", "submitted"],
            )
            yield Static("", id="login-problem", classes="problem")
        yield Footer()

    @on(Input.Changed, "#login-key")
    def _changed(self, event: Input.Changed) -> None:
        problem = self.query_one("#login-problem", Static)
        result = event.validation_result
        ok = result is None or result.is_valid or not event.value
        problem.update("" if ok else "; ".join(result.failure_descriptions if result else []))

    @on(Input.Submitted, "#login-key")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.validation_result is None or event.validation_result.is_valid:
            self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)
