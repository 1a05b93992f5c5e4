"""The key and command reference (`?`)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Label

KEYS: tuple[tuple[str, str], ...] = (
    ("↑ ↓  j k", "move in the focused pane"),
    ("tab / shift+tab", "next / previous pane"),
    ("0-9", "namespace by number (0 = all)"),
    ("/", "filter the focused table (esc clears)"),
    (":", "command: :ns NAME  :ctx NAME  :deploy  :rs  :sts  :all  :q"),
    ("i", "intercept the selected workload"),
    ("l", "leave the selected intercept (yours)"),
    ("e", "write the selected intercept's env file"),
    ("c", "copy the intercept's header or preview URL"),
    ("r", "revoke someone's intercept (admin, asks first)"),
    ("f", "traffic: follow / pause"),
    ("a", "traffic: mine / all traffic through the agents (why a request missed)"),
    ("enter", "traffic: details of the request, why it did not match"),
    ("L", "log in (team mode)"),
    ("?", "this help"),
    ("esc", "back"),
    ("q", "quit (asks whether to keep your intercepts)"),
)


class HelpModal(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "close", id="help.close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="modal-box", id="help-box"):
            yield Label("waylay keys", classes="modal-title")
            yield DataTable(id="help-keys", cursor_type="none", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#help-keys", DataTable)
        table.add_columns("key", "does")
        for key, what in KEYS:
            table.add_row(key, what)

    def action_close(self) -> None:
        self.dismiss(None)
