"""Namespaces with their workload counts; ``0`` is every namespace."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

if TYPE_CHECKING:
    from core.models import NamespaceInfo

ALL = ""
"""The option id standing for every namespace."""


class NamespaceList(OptionList):
    BINDINGS = [
        Binding("j", "cursor_down", "down", show=False),
        Binding("k", "cursor_up", "up", show=False),
    ]

    class Picked(Message):
        def __init__(self, name: str | None) -> None:
            super().__init__()
            self.name = name
            """The namespace; None for every namespace."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.namespaces: list[NamespaceInfo] = []
        self.border_title = "namespaces"

    def show(self, namespaces: list[NamespaceInfo], current: str | None) -> None:
        self.namespaces = sorted(namespaces, key=lambda n: n.name)
        total = sum(n.workload_count for n in self.namespaces)
        options = [Option(f"0 all ({total})", id=ALL)]
        for number, ns in enumerate(self.namespaces, start=1):
            key = str(number) if number <= 9 else " "
            options.append(Option(f"{key} {ns.name} ({ns.workload_count})", id=ns.name))
        self.set_options(options)
        self.highlighted = self.index_of(current)

    def index_of(self, namespace: str | None) -> int:
        names = [n.name for n in self.namespaces]
        return names.index(namespace) + 1 if namespace in names else 0

    def by_number(self, number: int) -> str | None:
        """The namespace under digit ``number`` (``0`` is all), or raises IndexError."""
        if number == 0:
            return None
        return self.namespaces[number - 1].name

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        picked = event.option.id
        self.post_message(self.Picked(None if picked == ALL else picked))
