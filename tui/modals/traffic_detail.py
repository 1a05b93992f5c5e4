"""One request or connection in full: headers (redacted) and why it missed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Label, Static

from core.protocol import redact

if TYPE_CHECKING:
    from core.protocol import TrafficEvent


def describe(event: TrafficEvent) -> list[tuple[str, str]]:
    """The summary rows of the detail view."""
    status = "-" if event.status is None else str(event.status)
    rows = [
        ("time", event.time.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]),
        ("pod", event.pod or "-"),
        ("intercept", event.intercept or "(none)"),
        ("protocol", event.protocol),
        ("request", f"{event.method} {event.path}".strip() or "-"),
        ("status", status),
        ("duration", f"{event.duration_ms:.1f} ms"),
        ("bytes", f"{event.bytes_in} in / {event.bytes_out} out"),
        ("routed to", event.routed),
    ]
    if event.routed == "app":
        rows.append(("why", event.reason or "matched no intercept"))
    return rows


class TrafficDetailModal(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "close", "close", id="detail.close")]

    def __init__(self, event: TrafficEvent) -> None:
        super().__init__()
        self.event = event

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="modal-box", id="detail-box"):
            yield Label("Request", classes="modal-title")
            yield DataTable(id="detail-summary", cursor_type="none", show_header=False)
            yield Label("Headers", classes="modal-title")
            if self.event.headers:
                yield DataTable(id="detail-headers", cursor_type="none", show_header=False)
            else:
                yield Static("(no headers: a TCP connection, or none were sent)", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        summary = self.query_one("#detail-summary", DataTable)
        summary.add_columns("field", "value")
        for row in describe(self.event):
            summary.add_row(*row)
        if self.event.headers:
            headers = self.query_one("#detail-headers", DataTable)
            headers.add_columns("header", "value")
            for name, value in sorted(redact(self.event.headers).items()):
                headers.add_row(name, value)

    def action_close(self) -> None:
        self.dismiss(None)
