"""A daemon that died without `quit` is cleaned up by the next one.

Covers: a daemon notes its manager session beside its socket; when it dies
(cancelled, its note left behind) its intercept stays in the manager; the
next daemon on that socket takes the session over at once and removes what
it held, so the same intercept can be made again immediately (no "Port
already intercepted" from the dead self) and the manager holds exactly one;
`quit` deletes the note, so a later daemon has nothing to take over.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from core.daemon import ContextHandle, Daemon
from core.daemon_client import DaemonClient
from core.models import WorkloadInfo
from core.session import Session
from tests.core.managerkit import Agents, Manager, serve_manager
from tests.core.test_daemon import ORDERS
from tests.core.test_session import UrlBox

REQUEST = {"context": "t", "request": {"name": "orders", "port": "1"}}


def _daemon(path: Path, manager: Manager, agents: Agents) -> Daemon:
    async def factory(context: str | None, kubeconfig: str | None) -> ContextHandle:
        session = Session(
            context=context or "t", connector=UrlBox(manager.url).connect, opener=agents.open
        )

        async def workloads(namespace: str) -> list[WorkloadInfo]:
            return [ORDERS] if namespace == "demo" else []

        return ContextHandle(context or "t", "demo", session, workloads)

    return Daemon(path=path, factory=factory)


async def test_successor_takes_over_and_clears(tmp_path: Path) -> None:
    path = tmp_path / "d" / "d.sock"
    async with anyio.create_task_group() as tg, serve_manager() as manager:
        manager.add_agent("orders-a")
        agents = Agents(tg)
        # the first daemon makes an intercept, then dies without `quit`
        async with anyio.create_task_group() as first_tg:
            first = _daemon(path, manager, agents)
            await first_tg.start(first.serve)
            client = await DaemonClient.connect(path, start=False)
            await client.call("intercept", REQUEST)
            # die with the client still attached (an idle socket: nothing mid-read)
            first_tg.cancel_scope.cancel()
        await client.aclose()
        [left] = manager.registry.intercepts()
        assert first.note.path.is_file()
        # the next one takes its session over: the same intercept works at once
        second = _daemon(path, manager, agents)
        await tg.start(second.serve)
        async with await DaemonClient.connect(path, start=False) as client:
            made = await client.call("intercept", REQUEST)
            assert made["intercept"]["session_id"] == left.session_id
            assert [i.spec.name for i in manager.registry.intercepts()] == ["orders-demo"]
            await client.call("quit")
        with anyio.fail_after(10):
            await second.stopped()
        assert manager.registry.intercepts() == []
        assert not second.note.path.exists()
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("junk", [b"", b"{not json", b'{"sessions": [{"context": 1}]}'])
def test_torn_note_means_nothing_to_take_over(tmp_path: Path, junk: bytes) -> None:
    daemon = Daemon(path=tmp_path / "d.sock")
    daemon.note.path.write_bytes(junk)
    assert daemon.note.take() == []
    assert not daemon.note.path.exists()
