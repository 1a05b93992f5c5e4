"""Quitting: keep the intercepts running in the daemon, leave them, or stay."""

from __future__ import annotations

from typing import Literal

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, Static

QuitChoice = Literal["keep", "leave", "stay"]


class QuitModal(ModalScreen[QuitChoice]):
    BINDINGS = [
        Binding("k", "choose('keep')", "keep running", id="quit.keep"),
        Binding("l", "choose('leave')", "leave them", id="quit.leave"),
        Binding("escape", "choose('stay')", "stay", id="quit.stay"),
    ]

    def __init__(self, count: int, *, can_keep: bool = True) -> None:
        super().__init__()
        self.count = count
        self.can_keep = can_keep
        """False when nothing would hold them after we exit (no daemon)."""

    def compose(self) -> ComposeResult:
        noun = "intercept" if self.count == 1 else "intercepts"
        with Vertical(classes="modal-box"):
            yield Label(f"Quit with {self.count} {noun} of yours running?", classes="modal-title")
            if self.can_keep:
                explain = (
                    "Keep them: the waylay daemon goes on routing traffic to this machine "
                    "(`waylay leave NAME` or `waylay quit` ends them later).\n"
                )
            else:
                explain = "Nothing keeps them once waylay exits: they will be left.\n"
            yield Static(
                explain + "Leave them: traffic goes back to the app now.",
                classes="hint",
                markup=False,
            )
            with Horizontal(classes="modal-buttons"):
                if self.can_keep:
                    yield Button("Keep running (k)", id="quit-keep", variant="primary")
                yield Button("Leave them (l)", id="quit-leave", variant="warning")
                yield Button("Stay (esc)", id="quit-stay")
        yield Footer()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "choose" and parameters == ("keep",):
            return self.can_keep
        return True

    def action_choose(self, choice: QuitChoice) -> None:
        self.dismiss(choice)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        choice: QuitChoice = {"quit-keep": "keep", "quit-leave": "leave"}.get(  # type: ignore[assignment]
            event.button.id or "", "stay"
        )
        self.dismiss(choice)
