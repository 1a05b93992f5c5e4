"""The live traffic log: one row per request or connection an agent saw.

Events arrive in bursts; ``add`` queues them and one refresh appends them all.
Follow mode keeps the newest row in view; pausing keeps the cursor where the
user put it while events keep arriving. A filter (``/``) narrows the rows;
only the last ``limit`` events are kept. ``watch_all`` says whether the feed
is ours alone or all traffic through the agents (the title shows which); rows
the agents sent to the app read "→ app", and their detail says why they missed.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

if TYPE_CHECKING:
    from core.protocol import TrafficEvent


def status_text(event: TrafficEvent) -> Text:
    if event.status is None:
        return Text("-", style="dim")
    style = "green" if event.status < 400 else "yellow" if event.status < 500 else "red"
    return Text(str(event.status), style=style)


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{count}B"


def event_matches(event: TrafficEvent, text: str) -> bool:
    if not text:
        return True
    needle = text.lower()
    fields = (
        event.intercept,
        event.method,
        event.path,
        str(event.status or ""),
        event.routed,
        event.pod,
        event.reason,
    )
    return any(needle in f.lower() for f in fields)


class TrafficLog(DataTable[str | Text]):
    BINDINGS = [
        Binding("j", "cursor_down", "down", show=False),
        Binding("k", "cursor_up", "up", show=False),
    ]

    class Opened(Message):
        """Enter on a row: show the request in full."""

        def __init__(self, event: TrafficEvent) -> None:
            super().__init__()
            self.event = event

    def __init__(self, *, limit: int = 5000, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.limit = limit
        self.events: deque[tuple[int, TrafficEvent]] = deque(maxlen=limit)
        self._pending: list[TrafficEvent] = []
        self._serial = 0
        self.following = True
        self.watch_all = False
        """Showing all traffic through the agents, not only our intercepts'."""
        self.filter_text = ""
        self._title()

    def on_mount(self) -> None:
        for label in ("TIME", "INTERCEPT", "METHOD", "PATH", "STATUS", "MS", "BYTES", "ROUTED"):
            self.add_column(label, key=label.lower())

    def add(self, events: list[TrafficEvent]) -> None:
        first = not self._pending
        self._pending.extend(events)
        if first:
            self.call_after_refresh(self._flush)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        dropped_oldest = len(self.events) + len(pending) > self.limit
        for event in pending:
            self._serial += 1
            self.events.append((self._serial, event))
        if dropped_oldest:
            self._rebuild()
        else:
            for serial, event in list(self.events)[-len(pending) :]:
                if event_matches(event, self.filter_text):
                    self._add_row(serial, event)
        if self.following and self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)
        self._title()

    def _add_row(self, serial: int, event: TrafficEvent) -> None:
        routed = Text(
            "→ you" if event.routed == "workstation" else "→ app",
            style="bold" if event.routed == "workstation" else "dim",
        )
        self.add_row(
            event.time.strftime("%H:%M:%S.%f")[:-3],
            event.intercept.rsplit(":", 1)[-1] if event.intercept else "-",
            event.method or event.protocol,
            event.path or "-",
            status_text(event),
            f"{event.duration_ms:.0f}",
            human_bytes(event.bytes_in + event.bytes_out),
            routed,
            key=str(serial),
        )

    def _rebuild(self) -> None:
        self.clear()
        for serial, event in self.events:
            if event_matches(event, self.filter_text):
                self._add_row(serial, event)

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self._rebuild()
        if self.following and self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)
        self._title()

    def toggle_follow(self) -> bool:
        self.following = not self.following
        if self.following and self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)
        self._title()
        return self.following

    def set_watch_all(self, on: bool) -> None:
        self.watch_all = on
        self._title()

    def _title(self) -> None:
        scope = "all through the agents" if self.watch_all else "mine"
        mode = "following" if self.following else "paused"
        flt = f" · /{escape(self.filter_text)}" if self.filter_text else ""
        self.border_title = f"traffic ({scope}) · {mode}{flt} · {len(self.events)}"

    @property
    def selected(self) -> TrafficEvent | None:
        if self.row_count == 0:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        found = dict(self.events).get(int(key or 0))
        return found

    @on(DataTable.RowSelected)
    def _opened(self, event: DataTable.RowSelected) -> None:
        event.stop()
        chosen = dict(self.events).get(int(event.row_key.value or 0))
        if chosen is not None:
            self.post_message(self.Opened(chosen))
