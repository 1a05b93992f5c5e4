"""The one-line prompt for `/` filters and `:` commands (k9s style)."""

from __future__ import annotations

from typing import Literal

from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input

PromptKind = Literal["filter", "command"]
COMMAND_HELP = "ns NAME · ctx NAME · deploy · rs · sts · all · q"


class PromptBar(Input):
    BINDINGS = [Binding("escape", "close", "back", id="prompt.close")]

    class Filter(Message):
        """The filter text changed (every keystroke)."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Command(Message):
        """A `:` command was entered."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Closed(Message):
        """The prompt was closed; ``cancelled`` when with escape."""

        def __init__(self, kind: PromptKind, cancelled: bool) -> None:
            super().__init__()
            self.kind = kind
            self.cancelled = cancelled

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.kind: PromptKind = "filter"
        self.target = "workloads"
        """What a filter applies to (the pane that had focus)."""
        self.display = False

    def open(self, kind: PromptKind, value: str = "", *, target: str = "workloads") -> None:
        self.kind = kind
        self.target = target
        self.placeholder = (
            "filter…" if kind == "filter" else "ns NAME · ctx NAME · deploy · rs · sts · all · q"
        )
        self.border_title = "/" if kind == "filter" else ":"
        self.value = value
        self.display = True
        self.focus()

    def action_close(self) -> None:
        self.display = False
        if self.kind == "filter":
            self.post_message(self.Filter(""))
        self.post_message(self.Closed(self.kind, cancelled=True))

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        if self.kind == "filter" and self.display:
            self.post_message(self.Filter(event.value))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.display = False
        if self.kind == "command":
            self.post_message(self.Command(event.value.strip().lstrip(":")))
        self.post_message(self.Closed(self.kind, cancelled=False))
