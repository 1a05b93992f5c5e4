"""The manager's agent and client WebSocket APIs, with real sockets.

Covers: ClientHello -> ClientWelcome (single-user identity = client name);
version skew refused on both APIs; team mode refuses a missing or unknown key
and names the key's user as identity; two clients racing for one port: exactly
one wins and the other is told who holds it; agents get their welcome, their
workload's snapshot at once, and a new snapshot on every change; a client that
stops heartbeating loses its intercepts within seconds (and the agent is told);
admin revoke (a non-admin is refused, the owner gets an event); API keys
issued (shown once), listed without secrets, revoked (live sessions end, the
key no longer works); team mode can't be switched on without an admin key;
prepare streams progress events; after a manager restart a client resumes its
session id and intercepts; malformed frames get a clear error; a first
message that is not the API's hello is refused on both APIs, naming the hello
expected, and the socket closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from core.errors import RbacDenied
from core.protocol import (
    AgentHello,
    AgentWelcome,
    ClientHello,
    ClientWelcome,
    ErrorReply,
    Heartbeat,
    InterceptSpec,
    InterceptsSnapshot,
    TakeoverPort,
)
from tests.manager.wsclient import Conn
from webhook.apikeys import ManagerSettings, MemorySettingsStore, issue_key
from webhook.client_api import Progress
from webhook.config import ManagerConfig
from webhook.registry import Registry
from webhook.server import Bound, run_manager


class SteppingPreparer:
    """Reports two progress steps, then the agents the registry knows."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def prepare(self, spec: InterceptSpec, progress: Progress) -> dict[str, Any]:
        if spec.workload == "forbidden":
            raise RbacDenied("patch", "deployments.apps", spec.namespace, message="no")
        await progress({"step": "rolling", "message": f"rolling {spec.workload}"})
        await progress({"step": "ready", "message": "1/1 agents"})
        return {"agents": len(self.registry.agents)}


@dataclass
class Manager:
    bound: Bound
    registry: Registry
    store: MemorySettingsStore

    @property
    def client_url(self) -> str:
        return "http://{}:{}/v1/client".format(*self.bound.client)

    @property
    def agent_url(self) -> str:
        return "http://{}:{}/v1/agent".format(*self.bound.agent)


def config() -> ManagerConfig:
    return ManagerConfig(
        agent_host="127.0.0.1", agent_port=0, client_port=0, use_cluster=False, session_ttl=1.5
    )


@pytest.fixture
async def manager() -> AsyncIterator[Manager]:
    store = MemorySettingsStore()
    registry = Registry(session_ttl=1.5)
    async with anyio.create_task_group() as tg:
        bound = await tg.start(run_manager, config(), store, registry, SteppingPreparer(registry))
        yield Manager(bound, registry, store)
        tg.cancel_scope.cancel()


async def connect(m: Manager, conns: list[Conn], **hello: Any) -> tuple[Conn, ClientWelcome]:
    c = await Conn.open(m.client_url)
    conns.append(c)
    welcome = await c.hello(**hello)
    assert isinstance(welcome, ClientWelcome), welcome
    return c, welcome


def spec(name: str, **kw: Any) -> dict[str, Any]:
    base = {"name": name, "namespace": "demo", "workload": "hello", "service": "hello"}
    return {**base, "service_port": 80, **kw}


def agent_hello(pod: str = "hello-1", version: str = "1.0") -> AgentHello:
    port = TakeoverPort(
        service="hello", service_port=80, app_container="app", app_port=8080, agent_port=9900
    )
    return AgentHello(
        version=version,
        pod=pod,
        namespace="demo",
        pod_ip="127.0.0.2",
        workload_kind="Deployment",
        workload_name="hello",
        ports=[port],
        tunnel_port=7777,
        env={"GREETING": "hi"},
    )


async def test_hello_and_version_skew(manager: Manager, conns: list[Conn]) -> None:
    _, welcome = await connect(manager, conns, client="alice@laptop")
    assert welcome.mode == "single-user" and welcome.identity == "alice@laptop"
    old = await Conn.open(manager.client_url)
    conns.append(old)
    reply = await old.hello(version="2.0")
    assert isinstance(reply, ErrorReply) and reply.error.code == "version-skew"
    assert await old.recv() is None
    agent = await Conn.open(manager.agent_url)
    conns.append(agent)
    await agent.send(agent_hello(version="0.9"))
    reply = await agent.recv()
    assert isinstance(reply, ErrorReply) and reply.error.code == "version-skew"


async def test_malformed_first_frame(manager: Manager, conns: list[Conn]) -> None:
    c = await Conn.open(manager.client_url)
    conns.append(c)
    await c.ws.send_str('{"type": "client-hello"}')
    reply = await c.recv()
    assert isinstance(reply, ErrorReply) and reply.error.code == "bad-request"
    assert "client" in reply.error.message


async def test_first_message_must_be_the_apis_hello(manager: Manager, conns: list[Conn]) -> None:
    for url, wrong, expected in [
        (manager.client_url, Heartbeat(), "client-hello"),
        (manager.agent_url, ClientHello(client="alice@laptop"), "agent-hello"),
    ]:
        c = await Conn.open(url)
        conns.append(c)
        await c.send(wrong)
        reply = await c.recv()
        assert isinstance(reply, ErrorReply), reply
        assert reply.error.code == "bad-request"
        assert reply.error.title == f"Expected {expected}"
        assert reply.error.message == f"got {wrong.type}"
        assert await c.recv() is None


async def test_team_mode_requires_a_valid_key(manager: Manager, conns: list[Conn]) -> None:
    plaintext, record = issue_key("alice", admin=False)
    manager.store.settings = ManagerSettings(mode="team", keys={record.id: record})
    for key in (None, "wl_nope_nope", plaintext[:-1] + "x"):
        c = await Conn.open(manager.client_url)
        conns.append(c)
        reply = await c.hello(api_key=key)
        assert isinstance(reply, ErrorReply) and reply.error.code == "unauthorized"
        assert "waylay login" in reply.error.hint
    _, welcome = await connect(manager, conns, api_key=plaintext)
    assert welcome.identity == "alice" and welcome.mode == "team"


async def test_racing_clients_exactly_one_wins(manager: Manager, conns: list[Conn]) -> None:
    a, _ = await connect(manager, conns, client="alice@a")
    b, _ = await connect(manager, conns, client="bob@b")
    results: dict[str, Any] = {}

    async def go(name: str, c: Conn) -> None:
        results[name] = await c.call("create", spec=spec(name))

    async with anyio.create_task_group() as tg:
        tg.start_soon(go, "one", a)
        tg.start_soon(go, "two", b)
    oks = [r for r in results.values() if r.ok]
    losers = [r for r in results.values() if not r.ok]
    assert len(oks) == 1 and len(losers) == 1
    assert losers[0].error.code == "conflict"
    assert oks[0].result["owner"] in losers[0].error.message


async def test_agents_get_snapshots_and_silent_clients_lose_intercepts(
    manager: Manager, conns: list[Conn]
) -> None:
    agent = await Conn.open(manager.agent_url)
    conns.append(agent)
    await agent.send(agent_hello())
    assert isinstance(await agent.recv(), AgentWelcome)
    first = await agent.recv()
    assert isinstance(first, InterceptsSnapshot) and first.intercepts == []

    c, welcome = await connect(manager, conns)
    created = await c.call("create", spec=spec("mine"))
    assert created.ok and created.result["state"] == "active"
    snap = await agent.recv()
    assert isinstance(snap, InterceptsSnapshot)
    assert [i.id for i in snap.intercepts] == [f"{welcome.session_id}:mine"]

    agents = await c.call("agents", namespace="demo", workload="hello")
    assert agents.ok and agents.result[0]["env"] == {"GREETING": "hi"}

    # The client goes quiet; the agent keeps heartbeating and is told.
    with anyio.fail_after(10):
        while True:
            await agent.send(Heartbeat())
            with anyio.move_on_after(0.3):
                snap = await agent.recv()
                if isinstance(snap, InterceptsSnapshot) and snap.intercepts == []:
                    break
    assert manager.registry.intercepts() == []
    event = await c.wait_event(lambda e: e.kind == "session" and e.data["state"] == "closed")
    assert "no heartbeat" in event.data["message"]


async def test_admin_revoke_and_api_keys(manager: Manager, conns: list[Conn]) -> None:
    admin, _ = await connect(manager, conns, client="root@ops")  # single-user: admin
    made = await admin.call("apikey-create", user="bob")
    assert made.ok and made.result["key"].startswith("wl_")
    bob_key = made.result["key"]
    root_key = (await admin.call("apikey-create", user="root", admin=True)).result["key"]
    listed = await admin.call("apikey-list")
    assert {k["user"] for k in listed.result} == {"bob", "root"}
    assert "key" not in listed.result[0] and "sha256" not in listed.result[0]
    assert (await admin.call("set-mode", mode="team")).ok

    bob, _ = await connect(manager, conns, client="bob@b", api_key=bob_key)
    root, _ = await connect(manager, conns, client="root@ops", api_key=root_key)
    info = (await bob.call("create", spec=spec("bobs"))).result
    assert info["owner"] == "bob"
    refused = await bob.call("revoke", id=info["id"])
    assert not refused.ok and refused.error.code == "forbidden"
    revoked = await root.call("revoke", id=info["id"])
    assert revoked.ok and revoked.result["state"] == "removed"
    event = await bob.wait_event(lambda e: e.kind == "intercept" and e.data["state"] == "removed")
    assert "revoked by root" in event.data["message"]

    key_id = next(k["id"] for k in listed.result if k["user"] == "bob")
    gone = await root.call("apikey-revoke", id=key_id)
    assert gone.ok and gone.result["sessions_ended"] == 1
    await bob.wait_event(lambda e: e.kind == "session" and e.data["state"] == "closed")
    again = await Conn.open(manager.client_url)
    conns.append(again)
    reply = await again.hello(api_key=bob_key)
    assert isinstance(reply, ErrorReply) and reply.error.code == "unauthorized"


async def test_team_mode_needs_an_admin_key_first(manager: Manager, conns: list[Conn]) -> None:
    c, _ = await connect(manager, conns)
    refused = await c.call("set-mode", mode="team")
    assert not refused.ok and refused.error.code == "precondition"
    assert manager.store.settings.mode == "single-user"


async def test_prepare_streams_progress(manager: Manager, conns: list[Conn]) -> None:
    c, _ = await connect(manager, conns)
    done = await c.call("prepare", spec=spec("p"))
    assert done.ok
    steps = [e.data["step"] for e in c.events if e.kind == "progress"]
    assert steps == ["rolling", "ready"]
    bad = await c.call("prepare", spec={"name": "Not A Label"})
    assert not bad.ok and bad.error.code == "bad-request"
    denied = await c.call("prepare", spec=spec("f", workload="forbidden"))
    assert not denied.ok and denied.error.code == RbacDenied.code
    assert "deployments.apps" in denied.error.title + denied.error.message


async def test_session_resumes_after_manager_restart(conns: list[Conn]) -> None:
    store = MemorySettingsStore()
    cfg = config()
    async with anyio.create_task_group() as tg:
        reg1 = Registry()
        bound = await tg.start(run_manager, cfg, store, reg1, None)
        m1 = Manager(bound, reg1, store)
        c, welcome = await connect(m1, conns)
        assert (await c.call("create", spec=spec("mine"))).ok
        tg.cancel_scope.cancel()
    async with anyio.create_task_group() as tg:
        reg2 = Registry()
        bound = await tg.start(run_manager, cfg, store, reg2, None)
        m2 = Manager(bound, reg2, store)
        desired = [InterceptSpec.model_validate(spec("mine"))]
        c2, welcome2 = await connect(m2, conns, session_id=welcome.session_id, intercepts=desired)
        assert welcome2.session_id == welcome.session_id
        listed = await c2.call("list")
        assert [i["id"] for i in listed.result] == [f"{welcome.session_id}:mine"]
        assert listed.result[0]["age_seconds"] >= 0
        tg.cancel_scope.cancel()
