"""The waylay Textual app: connects a ``ClusterSource`` and shows the main view.

Slim on purpose: the screens hold the behaviour. The app owns the source, the
one place worker failures are turned into notifications or the error modal,
the wizard's entry point, context switching and quitting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from textual import work
from textual.app import App
from textual.worker import Worker, WorkerState

from core.naming import derive_name
from tui import messages as m
from tui.modals.error import ErrorModal
from tui.modals.quit import QuitChoice, QuitModal
from tui.screens.main import MainScreen
from tui.screens.wizard import WizardScreen
from tui.widgets.intercepts_pane import InterceptsPane
from tui.wizard.plan import Wizard, WizardError

if TYPE_CHECKING:
    from core.models import WorkloadInfo
    from tui.source import ClusterSource, InterceptOutcome

CLOSE_TIMEOUT = 10.0
"""Seconds quitting waits for intercepts to be left before exiting anyway."""
Connect = Callable[[], Awaitable["ClusterSource"]]

TRANSIENT_GROUPS = frozenset({"load", "changes", "traffic", "session", "detect", "serve"})
"""Background workers whose failures are notified, not shown in a modal."""


class WaylayApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "waylay"
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, connect: Connect, *, local_port: int | None = None) -> None:
        super().__init__()
        self.connect = connect
        self.local_port = local_port
        """The wizard's default local port (``--local-port``)."""
        self.source: ClusterSource | None = None
        self.env_dir = Path.cwd()
        """Where `e` writes ``<intercept>.env``."""

    @property
    def main(self) -> MainScreen:
        screen = self.get_screen("main")
        assert isinstance(screen, MainScreen)
        return screen

    def on_mount(self) -> None:
        self.install_screen(MainScreen(), "main")
        self.push_screen("main")
        self.open_source()

    @work(exclusive=True, group="connect", exit_on_error=False)
    async def open_source(self) -> None:
        self.serve(await self.connect())

    @work(exclusive=True, group="serve", exit_on_error=False)
    async def serve(self, source: ClusterSource) -> None:
        """Adopt ``source`` and keep it running (its manager session) until replaced."""
        self.source = source
        self.main.start()
        await source.run()

    @work(exclusive=True, group="context", exit_on_error=False)
    async def switch_context(self, name: str) -> None:
        assert self.source is not None
        self.serve(await self.source.switch_context(name))
        self.main.post_message(m.ContextSwitched(name))
        self.notify(f"switched to {name}", title="context")

    # ------------------------------------------------------------- errors

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every worker failure of every screen ends up here, and only here."""
        if event.state != WorkerState.ERROR or event.worker.error is None:
            return
        self.show_error(event.worker.error, transient=event.worker.group in TRANSIENT_GROUPS)

    def show_error(self, error: BaseException, *, transient: bool = False) -> None:
        error = explained(error)
        title = getattr(error, "title", None)
        hint = getattr(error, "hint", "")
        detail = getattr(error, "detail", "")
        if not isinstance(title, str):
            title = "Something unexpected went wrong"
            detail = f"{type(error).__name__}: {error}"
            hint = "This is a bug in waylay: copy this (c) and report it."
            transient = False
        if getattr(error, "severity", "error") == "warning":
            self.notify(f"{detail}\n{hint}".strip(), title=title, severity="warning")
        elif transient:
            self.notify(f"{detail}\n{hint}".strip(), title=title, severity="error", timeout=8)
        else:
            self.push_screen(ErrorModal(title, detail, hint))

    # ------------------------------------------------------------- wizard

    def open_wizard(self, workload: WorkloadInfo) -> None:
        session = self.main.session
        if session is None:
            self.notify("still contacting the traffic manager…", severity="warning")
            return
        if not session.healthy and session.problem is not None:
            self.show_error(session.problem)  # e.g. not installed: what to run
            return
        name = derive_name(workload.name, workload.namespace)
        mine = self.main.query_one(InterceptsPane).mine
        # re-running an intercept of the same name moves it: its own port is not busy
        busy = frozenset(i.spec.local_port for i in mine if i.spec.name != name)
        try:
            wizard = Wizard(
                workload,
                session.mode,
                session.session_id,
                busy_local_ports=busy,
                local_port=self.local_port,
            )
        except WizardError as problem:
            self.show_error(problem)
            return

        def finished(outcome: InterceptOutcome | None) -> None:
            if outcome is not None:
                self.main.post_message(m.InterceptStarted(outcome))

        self.push_screen(WizardScreen(wizard), finished)

    # --------------------------------------------------------------- quit

    def ask_quit(self, mine: int) -> None:
        """Quit; with intercepts of ours running, ask whether to keep them."""
        if mine == 0 or self.source is None:
            self.close_and_exit(keep=True)
            return

        def chosen(choice: QuitChoice | None) -> None:
            if choice in ("keep", "leave"):
                self.close_and_exit(keep=choice == "keep")

        self.push_screen(QuitModal(mine, can_keep=self.source.keeps_intercepts), chosen)

    @work(exclusive=True, group="quit", exit_on_error=False)
    async def close_and_exit(self, *, keep: bool) -> None:
        try:
            if self.source is not None:
                with anyio.move_on_after(CLOSE_TIMEOUT):
                    await self.source.close(keep_intercepts=keep)
        finally:
            self.exit()


def explained(error: BaseException) -> BaseException:
    """The error a person can act on: the first one with a title inside task-group groups."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = explained(inner)
            if isinstance(getattr(found, "title", None), str):
                return found
    return error


def run(argv: list[str] | None = None) -> None:
    """``python -m tui [--context NAME] [--kubeconfig PATH] [--local-port N] [--no-daemon]``."""
    import argparse

    from tui.core_source import connect_core
    from tui.daemon_source import connect_daemon

    parser = argparse.ArgumentParser(prog="waylay", description="waylay's terminal UI")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument(
        "--local-port",
        type=int,
        help="the intercept wizard's default local port (where your app listens)",
    )
    parser.add_argument(
        "--no-daemon",
        action="store_true",
        help="hold the session in this process (intercepts end when the TUI exits)",
    )
    args = parser.parse_args(argv)

    async def connect() -> ClusterSource:
        if args.no_daemon:
            return await connect_core(context=args.context, kubeconfig=args.kubeconfig)
        return await connect_daemon(context=args.context, kubeconfig=args.kubeconfig)

    WaylayApp(connect, local_port=args.local_port).run()
