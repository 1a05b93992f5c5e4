"""The top line: context, mode, who we are, the manager's version and health."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

if TYPE_CHECKING:
    from core.models import ContextInfo
    from tui.source import SessionInfo


def header_text(context: ContextInfo | None, session: SessionInfo | None) -> Text:
    text = Text()
    text.append(" waylay ", style="bold reverse")
    if context is None:
        text.append("  connecting…")
        return text
    text.append("  context ", style="dim")
    text.append(context.name, style="bold")
    text.append(f" ({context.server or context.cluster})", style="dim")
    if session is None:
        text.append("  │  manager ", style="dim")
        text.append("contacting…")
        return text
    text.append("  │  mode ", style="dim")
    text.append(session.mode, style="bold")
    text.append("  │  user ", style="dim")
    if session.mode == "team" and not session.logged_in:
        text.append("not logged in (L)", style="bold red")
    else:
        text.append(session.identity, style="bold")
    text.append("  │  manager ", style="dim")
    if session.manager_missing:
        text.append("not installed", style="bold yellow")
        text.append(" · run ", style="dim")
        text.append("waylay install", style="bold")
        text.append(" (i explains)", style="dim")
        return text
    text.append(session.manager_version or "?")
    if session.healthy:
        text.append(" ● healthy", style="green")
    else:
        text.append(" ● unreachable", style="bold red")
        if session.problem is not None:
            text.append(" (i explains)", style="dim")
    return text


class HeaderBar(Static):
    context: reactive[ContextInfo | None] = reactive(None)
    session: reactive[SessionInfo | None] = reactive(None)

    def render(self) -> Text:
        return header_text(self.context, self.session)
