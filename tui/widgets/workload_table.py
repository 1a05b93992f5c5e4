"""Workloads: name, kind, ready/replicas, services:ports, agent, intercepts.

The table shows one kind or all (``:deploy``, ``:rs``, ``:sts``, ``:all``) and
a text filter (``/``); rows keep their cursor across live updates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

if TYPE_CHECKING:
    from core.models import WorkloadInfo

KindFilter = Literal["all", "Deployment", "ReplicaSet", "StatefulSet"]
KIND_SHORT = {"Deployment": "deploy", "ReplicaSet": "rs", "StatefulSet": "sts"}
AGENT_STYLE = {"none": "dim", "injecting": "yellow", "partial": "yellow", "ready": "green"}


def services_cell(workload: WorkloadInfo) -> str:
    parts = []
    for service in workload.services:
        ports = ",".join(
            f"{p.port}" if str(p.target_port) == str(p.port) else f"{p.port}→{p.target_port}"
            for p in service.ports
        )
        parts.append(f"{service.name}:{ports}" if ports else service.name)
    return " ".join(parts) or "-"


def intercepts_cell(workload: WorkloadInfo) -> str:
    return " ".join(f"{i.spec.name}({i.owner})" for i in workload.intercepts) or "-"


def matches(workload: WorkloadInfo, kind: KindFilter, text: str) -> bool:
    if kind != "all" and workload.kind != kind:
        return False
    if not text:
        return True
    needle = text.lower()
    haystack = " ".join(
        (
            workload.namespace,
            workload.name,
            workload.kind,
            services_cell(workload),
            intercepts_cell(workload),
            workload.agent_state,
        )
    ).lower()
    return needle in haystack


class WorkloadTable(DataTable[str | Text]):
    BINDINGS = [
        Binding("j", "cursor_down", "down", show=False),
        Binding("k", "cursor_up", "up", show=False),
    ]

    class Picked(Message):
        """Enter (or a click) on a workload: the user wants to intercept it."""

        def __init__(self, workload: WorkloadInfo) -> None:
            super().__init__()
            self.workload = workload

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.workloads: dict[str, WorkloadInfo] = {}
        self.kind: KindFilter = "all"
        self.filter_text = ""
        self.all_namespaces = False
        self.border_title = "workloads"

    def on_mount(self) -> None:
        self._columns()

    def _columns(self) -> None:
        self.clear(columns=True)
        if self.all_namespaces:
            self.add_column("NAMESPACE", key="namespace")
        # widest last, so what matters most stays in view on narrow terminals
        for label in ("NAME", "KIND", "READY", "AGENT", "INTERCEPTS", "SERVICES:PORTS"):
            self.add_column(label, key=label.lower())

    def show(self, workloads: list[WorkloadInfo], *, all_namespaces: bool) -> None:
        columns_change = all_namespaces != self.all_namespaces
        self.all_namespaces = all_namespaces
        self.workloads = {w.key: w for w in workloads}
        if columns_change:
            self._columns()
        self.refill()

    def set_kind(self, kind: KindFilter) -> None:
        self.kind = kind
        self.refill()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self.refill()

    @property
    def shown(self) -> list[WorkloadInfo]:
        rows = [w for w in self.workloads.values() if matches(w, self.kind, self.filter_text)]
        return sorted(rows, key=lambda w: (w.namespace, w.name, w.kind))

    @property
    def selected(self) -> WorkloadInfo | None:
        if self.row_count == 0:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self.workloads.get(key or "")

    def refill(self) -> None:
        current = self.selected
        self.clear()
        for w in self.shown:
            cells: list[str | Text] = [w.namespace] if self.all_namespaces else []
            ready_style = "green" if w.ready >= w.replicas else "yellow"
            cells += [
                w.name,
                KIND_SHORT[w.kind],
                Text(f"{w.ready}/{w.replicas}", style=ready_style),
                Text(w.agent_state, style=AGENT_STYLE.get(w.agent_state, "")),
                intercepts_cell(w),
                services_cell(w),
            ]
            self.add_row(*cells, key=w.key)
        if current is not None and current.key in self.rows:
            self.move_cursor(row=self.get_row_index(current.key))
        kind = "all kinds" if self.kind == "all" else KIND_SHORT[self.kind]
        flt = f" · /{escape(self.filter_text)}" if self.filter_text else ""
        self.border_title = f"workloads · {kind}{flt} · {self.row_count}"

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        workload = self.workloads.get(event.row_key.value or "")
        if workload is not None:
            self.post_message(self.Picked(workload))
