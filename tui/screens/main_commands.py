"""The main view's `:` commands (k9s style): `:ns`, `:ctx`, `:deploy`, `:rs`, `:sts`, `:q`."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from tui.commands import BadCommand, parse_command
from tui.modals.contexts import ContextModal
from tui.widgets.namespace_list import NamespaceList
from tui.widgets.workload_table import KindFilter, WorkloadTable

if TYPE_CHECKING:
    from tui.screens.main import MainScreen


def run_command(screen: MainScreen, text: str) -> None:
    """Run a `:` command typed in the prompt bar."""
    try:
        command = parse_command(text)
    except BadCommand as problem:
        screen.notify(str(problem), title="command", severity="warning")
        return
    if command.kind == "kind":
        screen.query_one(WorkloadTable).set_kind(cast(KindFilter, command.arg))
    elif command.kind == "ns":
        _command_ns(screen, command.arg)
    elif command.kind == "ctx":
        _command_ctx(screen, command.arg)
    elif command.kind == "help":
        screen.action_help()
    elif command.kind == "quit":
        screen.action_quit()


def _command_ns(screen: MainScreen, name: str) -> None:
    if name in ("", "all", "0", "-A"):
        screen.switch_namespace(None)
        return
    known = [n.name for n in screen.query_one(NamespaceList).namespaces]
    if name not in known:
        screen.notify(
            f"no namespace {name!r}; known: {', '.join(known) or '(none)'}",
            title="command",
            severity="warning",
        )
        return
    screen.switch_namespace(name)


def _command_ctx(screen: MainScreen, name: str) -> None:
    source = screen.source
    if source is None:
        return
    if name:
        screen.waylay.switch_context(name)
        return

    def picked(choice: str | None) -> None:
        if choice and choice != source.context.name:
            screen.waylay.switch_context(choice)

    screen.app.push_screen(ContextModal(source.contexts(), source.context.name), picked)
