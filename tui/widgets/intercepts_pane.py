"""Everyone's intercepts, with ours marked: the rows `l`, `e`, `c`, `r` act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

if TYPE_CHECKING:
    from core.protocol import InterceptInfo

STATE_STYLE = {"active": "green", "preparing": "yellow", "waiting": "yellow", "failed": "red"}


def match_cell(info: InterceptInfo) -> str:
    spec = info.spec
    if spec.is_global:
        return "global"
    parts = [f"{k}={v}" for k, v in spec.headers.items()]
    if spec.path and spec.path.value != "/":
        parts.append(f"path {spec.path.kind} {spec.path.value}")
    return "personal " + " ".join(parts)


class InterceptsPane(DataTable[str | Text]):
    BINDINGS = [
        Binding("j", "cursor_down", "down", show=False),
        Binding("k", "cursor_up", "up", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.intercepts: dict[str, InterceptInfo] = {}
        self.session_id = ""
        self.border_title = "intercepts"

    def on_mount(self) -> None:
        for label in ("", "NAME", "OWNER", "STATE", "WORKLOAD", "PORT", "MATCH", "PREVIEW"):
            self.add_column(label, key=label.lower() or "mine")

    def is_mine(self, info: InterceptInfo) -> bool:
        return bool(self.session_id) and info.session_id == self.session_id

    def show(self, intercepts: list[InterceptInfo], session_id: str) -> None:
        current = self.selected
        self.session_id = session_id
        self.intercepts = {i.id: i for i in intercepts if i.state != "removed"}
        self.clear()
        rows = sorted(self.intercepts.values(), key=lambda i: (not self.is_mine(i), i.id))
        for info in rows:
            spec = info.spec
            port = spec.service_port_name or str(spec.service_port)
            self.add_row(
                Text("●", style="bold") if self.is_mine(info) else "",
                spec.name,
                "you" if self.is_mine(info) else info.owner,
                Text(info.state, style=STATE_STYLE.get(info.state, "")),
                f"{spec.namespace}/{spec.workload}",
                f"{spec.service}:{port} → :{spec.local_port}",
                match_cell(info),
                spec.preview_url or "-",
                key=info.id,
            )
        if current is not None and current.id in self.rows:
            self.move_cursor(row=self.get_row_index(current.id))
        mine = sum(1 for i in self.intercepts.values() if self.is_mine(i))
        self.border_title = f"intercepts · yours {mine} · all {len(self.intercepts)}"

    @property
    def selected(self) -> InterceptInfo | None:
        if self.row_count == 0:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self.intercepts.get(key or "")

    @property
    def mine(self) -> list[InterceptInfo]:
        return [i for i in self.intercepts.values() if self.is_mine(i)]
