"""An error to read and copy: title, what happened, what to do."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, Static


class ErrorModal(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,enter", "dismiss", "close", id="error.close"),
        Binding("c", "copy", "copy", id="error.copy", tooltip="copy the error text"),
    ]

    def __init__(self, title: str, message: str, hint: str = "") -> None:
        super().__init__()
        self.error_title = title
        self.message = message
        self.hint = hint

    @property
    def text(self) -> str:
        parts = [self.error_title, self.message]
        if self.hint:
            parts.append(self.hint)
        return "\n".join(p for p in parts if p)

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box", classes="modal-box"):
            yield Label(self.error_title, id="error-title", classes="modal-title")
            yield Static(self.message, id="error-message", markup=False)
            if self.hint:
                yield Static(self.hint, id="error-hint", classes="hint", markup=False)
            with Horizontal(classes="modal-buttons"):
                yield Button("Copy", id="error-copy")
                yield Button("Close", id="error-close", variant="primary")
        yield Footer()

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.text)
        self.notify("error copied to the clipboard", timeout=2)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#error-copy")
    def _copy(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_copy()

    @on(Button.Pressed, "#error-close")
    def _close(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)
