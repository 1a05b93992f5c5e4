"""The main view: namespaces, workloads, intercepts and live traffic.

Its workers (``SourceScreen``) read from the app's ``ClusterSource``; here it
lays out the panes, reacts to the app-level messages the workers post (it
never polls) and runs the keys (`:` commands in ``main_commands``). Keys follow k9s; the
footer shows only those that apply to what is selected now (``check_action``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer

from tui import messages as m
from tui.modals.confirm import ConfirmModal
from tui.modals.help import HelpModal
from tui.modals.login import LoginModal
from tui.modals.traffic_detail import TrafficDetailModal
from tui.screens.main_commands import run_command
from tui.screens.source_screen import SourceScreen
from tui.widgets.header_bar import HeaderBar
from tui.widgets.intercepts_pane import InterceptsPane
from tui.widgets.namespace_list import NamespaceList
from tui.widgets.prompt_bar import PromptBar
from tui.widgets.traffic_log import TrafficLog
from tui.widgets.workload_table import WorkloadTable
from tui.wizard.plan import header_line

if TYPE_CHECKING:
    from core.protocol import InterceptInfo

FILTERABLE = ("workloads", "traffic")


class MainScreen(SourceScreen):
    BINDINGS = [
        Binding(
            "i", "intercept", "intercept", id="main.intercept", tooltip="intercept the workload"
        ),
        Binding("l", "leave", "leave", id="main.leave", tooltip="end your intercept"),
        Binding("e", "env_file", "env file", id="main.env", tooltip="write the intercept's env"),
        Binding("c", "copy", "copy", id="main.copy", tooltip="copy header or preview URL"),
        Binding("r", "revoke", "revoke", id="main.revoke", tooltip="end someone's intercept"),
        Binding("f", "follow", "follow/pause", id="main.follow"),
        Binding(
            "a",
            "watch_all(True)",
            "all traffic",
            id="main.watch_all",
            tooltip="also show requests that matched no intercept, and why",
        ),
        Binding(
            "a",
            "watch_all(False)",
            "mine only",
            id="main.watch_mine",
            tooltip="show only your intercepts' traffic",
        ),
        Binding("slash", "filter", "filter", id="main.filter"),
        Binding("colon", "command", "command", id="main.command"),
        Binding("L", "login", "login", id="main.login"),
        Binding("question_mark", "help", "help", id="main.help"),
        Binding("escape", "back", "back", id="main.back"),
        Binding("q", "quit", "quit", id="main.quit"),
        *(Binding(str(n), f"namespace_number({n})", f"ns {n}", show=False) for n in range(10)),
    ]

    # ---------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        with Horizontal(id="top"):
            yield NamespaceList(id="namespaces")
            with Vertical(id="right"):
                yield WorkloadTable(id="workloads")
                yield InterceptsPane(id="intercepts")
        yield TrafficLog(id="traffic")
        yield PromptBar(id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(WorkloadTable).focus()

    def start(self) -> None:
        """Called by the app once a source is connected."""
        assert self.source is not None
        self.query_one(HeaderBar).context = self.source.context
        self.namespace = None
        self.load_session()
        self.load()
        self.watch_changes()
        self.watch_traffic()

    # ------------------------------------------------------ app-level events

    @on(m.SessionKnown)
    def _session(self, event: m.SessionKnown) -> None:
        self.session = event.session
        self.query_one(HeaderBar).session = event.session
        self.refresh_bindings()

    @on(m.LoggedIn)
    def _logged_in(self, event: m.LoggedIn) -> None:
        self.notify(f"logged in as {event.session.identity}", title="login")
        self._session(m.SessionKnown(event.session))

    @on(m.NamespacesLoaded)
    def _namespaces(self, event: m.NamespacesLoaded) -> None:
        self.query_one(NamespaceList).show(event.namespaces, self.namespace)

    @on(m.WorkloadsLoaded)
    def _workloads(self, event: m.WorkloadsLoaded) -> None:
        if event.scope != self.namespace:
            return
        table = self.query_one(WorkloadTable)
        table.show(event.workloads, all_namespaces=event.scope is None)
        self.refresh_bindings()

    @on(m.InterceptsLoaded)
    def _intercepts(self, event: m.InterceptsLoaded) -> None:
        session_id = self.session.session_id if self.session else ""
        self.query_one(InterceptsPane).show(event.intercepts, session_id)
        self.refresh_bindings()

    @on(m.ClusterChanged)
    def _changed(self) -> None:
        self.load()
        self.load_session()  # the manager may have come or gone

    @on(m.TrafficSeen)
    def _traffic(self, event: m.TrafficSeen) -> None:
        self.query_one(TrafficLog).add(event.events)

    @on(m.InterceptStarted)
    def _started(self, event: m.InterceptStarted) -> None:
        self.notify(f"{event.outcome.intercept.spec.name} is active", title="intercept")
        self.load()

    @on(m.InterceptLeft)
    def _left(self, event: m.InterceptLeft) -> None:
        self.notify(f"left {event.name}: traffic goes back to the app", title="intercept")
        self.load()

    @on(m.InterceptRevoked)
    def _revoked(self, event: m.InterceptRevoked) -> None:
        self.notify(f"revoked {event.intercept_id}", title="intercept")
        self.load()

    # ------------------------------------------------------- widget messages

    @on(NamespaceList.Picked)
    def _ns_picked(self, event: NamespaceList.Picked) -> None:
        self.switch_namespace(event.name)

    @on(WorkloadTable.Picked)
    def _workload_picked(self, event: WorkloadTable.Picked) -> None:
        self.waylay.open_wizard(event.workload)

    @on(TrafficLog.Opened)
    def _traffic_opened(self, event: TrafficLog.Opened) -> None:
        self.app.push_screen(TrafficDetailModal(event.event))

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self.refresh_bindings()

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()

    @on(PromptBar.Filter)
    def _filter(self, event: PromptBar.Filter) -> None:
        target = self._filter_target()
        target.set_filter(event.text)

    @on(PromptBar.Command)
    def _command(self, event: PromptBar.Command) -> None:
        self.run_command(event.text)

    @on(PromptBar.Closed)
    def _prompt_closed(self, event: PromptBar.Closed) -> None:
        self._filter_target().focus()
        self.refresh_bindings()

    # --------------------------------------------------------------- actions

    def switch_namespace(self, namespace: str | None) -> None:
        self.namespace = namespace
        names = self.query_one(NamespaceList)
        names.highlighted = names.index_of(namespace)
        self.load()

    def _filter_target(self) -> WorkloadTable | TrafficLog:
        return self._filter_target_for(self.query_one(PromptBar).target)

    def current_intercept(self) -> InterceptInfo | None:
        """The intercepts pane's row when it has focus, else ours on the workload."""
        pane = self.query_one(InterceptsPane)
        if self.focused is pane:
            return pane.selected
        workload = self.query_one(WorkloadTable).selected
        if workload is None:
            return None
        mine = [i for i in workload.intercepts if pane.is_mine(i)]
        return mine[0] if mine else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.query_one(PromptBar).display and action not in ("back",):
            return False
        pane = self.query_one(InterceptsPane)
        intercept = self.current_intercept()
        mine = intercept is not None and pane.is_mine(intercept)
        if action == "intercept":
            return self.query_one(WorkloadTable).selected is not None and self.source is not None
        if action in ("leave", "env_file"):
            return mine
        if action == "copy":
            return intercept is not None
        if action == "revoke":  # the manager decides who may (admins)
            return intercept is not None and not mine
        if action == "follow":
            return isinstance(self.focused, TrafficLog)
        if action == "watch_all":
            log = self.query_one(TrafficLog)
            return isinstance(self.focused, TrafficLog) and parameters == (not log.watch_all,)
        if action == "login":
            session = self.session
            return session is not None and session.mode == "team" and not session.logged_in
        if action == "back":
            return bool(
                self.query_one(WorkloadTable).filter_text or self.query_one(TrafficLog).filter_text
            )
        return True

    def action_intercept(self) -> None:
        workload = self.query_one(WorkloadTable).selected
        if workload is not None:
            self.waylay.open_wizard(workload)

    def action_leave(self) -> None:
        intercept = self.current_intercept()
        if intercept is not None:
            self.leave(intercept.spec.name)

    def action_env_file(self) -> None:
        intercept = self.current_intercept()
        if intercept is not None:
            self.write_env(intercept.spec.name)

    def action_copy(self) -> None:
        intercept = self.current_intercept()
        if intercept is None:
            return
        text = intercept.spec.preview_url or header_line(intercept.spec)
        self.app.copy_to_clipboard(text)
        self.notify(text, title="copied")

    def action_revoke(self) -> None:
        intercept = self.current_intercept()
        if intercept is None:
            return
        question = f"Revoke {intercept.spec.name} of {intercept.owner}?"
        detail = "Their traffic goes back to the app now; they are told it was revoked."

        def answered(yes: bool | None) -> None:
            if yes:
                self.revoke(intercept.id)

        self.app.push_screen(ConfirmModal(question, detail, yes="Revoke"), answered)

    def action_follow(self) -> None:
        self.query_one(TrafficLog).toggle_follow()  # its title says which

    def action_watch_all(self, on: bool) -> None:
        """Switch the traffic pane between ours and all traffic through the agents."""
        self.query_one(TrafficLog).set_watch_all(on)
        self.watch_traffic(on)  # exclusive: replaces the running feed
        self.refresh_bindings()

    def action_filter(self) -> None:
        target = "traffic" if isinstance(self.focused, TrafficLog) else "workloads"
        current = self._filter_target_for(target).filter_text
        self.query_one(PromptBar).open("filter", current, target=target)
        self.refresh_bindings()

    def _filter_target_for(self, target: str) -> WorkloadTable | TrafficLog:
        return self.query_one(TrafficLog) if target == "traffic" else self.query_one(WorkloadTable)

    def action_command(self) -> None:
        self.query_one(PromptBar).open("command")
        self.refresh_bindings()

    def action_back(self) -> None:
        self.query_one(WorkloadTable).set_filter("")
        self.query_one(TrafficLog).set_filter("")
        self.refresh_bindings()

    def action_help(self) -> None:
        self.app.push_screen(HelpModal())

    def action_login(self) -> None:
        if self.source is None:
            return

        def entered(key: str | None) -> None:
            if key:
                self.login(key)

        self.app.push_screen(LoginModal(self.source.context.name), entered)

    def action_namespace_number(self, number: int) -> None:
        try:
            namespace = self.query_one(NamespaceList).by_number(number)
        except IndexError:
            self.notify(f"no namespace number {number}", severity="warning", timeout=2)
            return
        self.switch_namespace(namespace)

    def action_quit(self) -> None:
        self.waylay.ask_quit(len(self.query_one(InterceptsPane).mine))

    def run_command(self, text: str) -> None:
        run_command(self, text)
