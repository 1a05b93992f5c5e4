"""The main view's base: its state, and the workers that read from the source.

Each worker calls core through the app's ``ClusterSource`` and posts an
app-level message (``tui.messages``) with what it learnt; ``MainScreen``
reacts to those. Failures go to the app's one ``Worker.StateChanged`` handler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual import work
from textual.screen import Screen
from textual.worker import Worker

from tui import messages as m

if TYPE_CHECKING:
    from tui.app import WaylayApp
    from tui.source import ClusterSource, SessionInfo


class SourceScreen(Screen[None]):
    def __init__(self) -> None:
        super().__init__()
        self.namespace: str | None = None
        self.session: SessionInfo | None = None

    @property
    def waylay(self) -> WaylayApp:
        return cast("WaylayApp", self.app)

    @property
    def source(self) -> ClusterSource | None:
        return self.waylay.source

    @work(exclusive=True, group="session", exit_on_error=False)
    async def load_session(self) -> None:
        assert self.source is not None
        self.post_message(m.SessionKnown(await self.source.session()))

    @work(exclusive=True, group="load", exit_on_error=False)
    async def load(self) -> None:
        source = self.source
        assert source is not None
        self.post_message(m.NamespacesLoaded(await source.namespaces()))
        namespace = self.namespace
        self.post_message(m.WorkloadsLoaded(namespace, await source.workloads(namespace)))
        self.post_message(m.InterceptsLoaded(await source.intercepts()))

    @work(exclusive=True, group="changes", exit_on_error=False)
    async def watch_changes(self) -> None:
        assert self.source is not None
        async for change in self.source.changes():
            error = getattr(change, "error", None)
            if error is not None:  # a watch failed and is retrying
                self.notify(
                    str(getattr(error, "hint", "")), title=str(error.title), severity="warning"
                )
            self.post_message(m.ClusterChanged())

    @work(exclusive=True, group="traffic", exit_on_error=False)
    async def watch_traffic(self, watch_all: bool = False) -> None:
        """Our traffic; with ``watch_all`` everyone's through the agents (replaces the feed)."""
        assert self.source is not None
        feed = self.source.traffic(watch_all=True) if watch_all else self.source.traffic()
        async for event in feed:
            self.post_message(m.TrafficSeen([event]))

    @work(exclusive=True, group="leave", exit_on_error=False)
    async def leave(self, name: str) -> None:
        assert self.source is not None
        await self.source.leave(name)
        self.post_message(m.InterceptLeft(name))

    @work(exclusive=True, group="revoke", exit_on_error=False)
    async def revoke(self, intercept_id: str) -> None:
        assert self.source is not None
        await self.source.revoke(intercept_id)
        self.post_message(m.InterceptRevoked(intercept_id))

    @work(exclusive=True, group="env", exit_on_error=False)
    async def write_env(self, name: str) -> None:
        assert self.source is not None
        path = await self.source.write_env_file(name, self.waylay.env_dir / f"{name}.env")
        self.notify(f"wrote {path}", title="env file")

    @work(exclusive=True, group="login", exit_on_error=False)
    async def login(self, api_key: str) -> None:
        assert self.source is not None
        session = await self.source.login(api_key)
        self.post_message(m.LoggedIn(session))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.waylay.on_worker_state_changed(event)
