"""The kubeconfig context switcher (`:ctx`)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, OptionList
from textual.widgets.option_list import Option


class ContextModal(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "cancel", id="ctx.cancel")]

    def __init__(self, contexts: list[str], current: str) -> None:
        super().__init__()
        self.contexts = contexts
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box", id="ctx-box"):
            yield Label("Switch context", classes="modal-title")
            options = [
                Option(f"{'* ' if name == self.current else '  '}{name}", id=name)
                for name in self.contexts
            ]
            yield OptionList(*options, id="ctx-list")
        yield Footer()

    def on_mount(self) -> None:
        listing = self.query_one(OptionList)
        if self.current in self.contexts:
            listing.highlighted = self.contexts.index(self.current)

    @on(OptionList.OptionSelected, "#ctx-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
