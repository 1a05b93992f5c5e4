"""The session/intercept registry (``webhook.registry``), as pure logic.

Covers: one global intercept per port+protocol; global vs personal conflict;
personal rule sets conflict when one is a subset of the other, different
header values coexist, path prefix ``/`` is no rule; the conflict names the
holder; other ports/protocols/workloads don't conflict; re-creating by name
moves the intercept; sessions that stop heartbeating lose their intercepts;
admin revoke; listing with owner, age and state (waiting until an agent
registers); agents' snapshots only hold their workload's intercepts; a
rebuilt session keeps its id; a session id can't be taken over by another
identity; changes are announced to subscribers.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.protocol import AgentHello, InterceptSpec, PathRule, TakeoverPort
from webhook.registry import Change, ConflictError, Registry, RegistryError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spec(name: str, **kw: Any) -> InterceptSpec:
    base: dict[str, Any] = {
        "name": name,
        "namespace": "demo",
        "workload": "hello",
        "service": "hello",
        "service_port": 80,
    }
    base.update(kw)
    return InterceptSpec(**base)


def personal(name: str, headers: dict[str, str], path: PathRule | None = None) -> InterceptSpec:
    return spec(name, mechanism="http", headers=headers, path=path)


def hello(pod: str = "hello-1", workload: str = "hello") -> AgentHello:
    return AgentHello(
        pod=pod,
        namespace="demo",
        pod_ip="10.0.0.1",
        workload_kind="Deployment",
        workload_name=workload,
        ports=[
            TakeoverPort(
                service="hello",
                service_port=80,
                app_container="app",
                app_port=8080,
                agent_port=9900,
            )
        ],
        tunnel_port=7777,
    )


@pytest.fixture
def reg() -> Registry:
    return Registry(session_ttl=5, clock=Clock())


def test_one_global_per_port_and_the_loser_is_told_who(reg: Registry) -> None:
    a = reg.open_session("alice@laptop", "alice")
    b = reg.open_session("bob@laptop", "bob")
    reg.create(a.id, spec("one"))
    with pytest.raises(ConflictError) as err:
        reg.create(b.id, spec("two"))
    assert err.value.problem.code == "conflict"
    assert "alice" in err.value.problem.message and f"{a.id}:one" in err.value.problem.message
    reg.create(b.id, spec("udp", protocol="UDP"))
    reg.create(b.id, spec("other-port", service_port=81))
    reg.create(b.id, spec("other-workload", workload="bye"))


def test_global_and_personal_conflict(reg: Registry) -> None:
    a = reg.open_session("a", "alice")
    b = reg.open_session("b", "bob")
    reg.create(a.id, personal("p", {"x-user": "alice"}))
    with pytest.raises(ConflictError):
        reg.create(b.id, spec("g"))


def test_personal_rules_subset_conflict_and_different_values_coexist(reg: Registry) -> None:
    a = reg.open_session("a", "alice")
    b = reg.open_session("b", "bob")
    reg.create(a.id, personal("p", {"x-user": "alice"}, PathRule(kind="prefix", value="/")))
    reg.create(b.id, personal("q", {"x-user": "bob"}))
    with pytest.raises(ConflictError):  # a superset of alice's rules
        reg.create(b.id, personal("r", {"X-User": "alice", "x-env": "dev"}))
    with pytest.raises(ConflictError):  # no rules at all: matches everything
        reg.create(b.id, personal("s", {}))
    reg.create(b.id, personal("t", {"x-user": "carol"}, PathRule(kind="prefix", value="/api")))
    assert len(reg.intercepts()) == 3


def test_same_name_moves_to_another_port(reg: Registry) -> None:
    a = reg.open_session("a", "alice")
    first = reg.create(a.id, spec("mine"))
    moved = reg.create(a.id, spec("mine", service_port=81))
    assert [i.spec.service_port for i in reg.intercepts()] == [81]
    assert moved.created == first.created


def test_silent_session_loses_its_intercepts(reg: Registry) -> None:
    clock = reg.clock
    assert isinstance(clock, Clock)
    a = reg.open_session("a", "alice")
    b = reg.open_session("b", "bob")
    reg.create(a.id, spec("one"))
    clock.now += 4
    assert reg.heartbeat(b.id)
    assert reg.expire() == []
    clock.now += 2
    assert reg.expire() == [a.id]
    assert reg.intercepts() == []
    assert not reg.heartbeat(a.id)
    reg.create(b.id, spec("two"))
    with pytest.raises(RegistryError) as err:
        reg.create(a.id, spec("three", service_port=99))
    assert err.value.problem.code == "no-session"


def test_admin_revoke_and_owner_remove(reg: Registry) -> None:
    changes: list[Change] = []
    reg.subscribe(changes.append)
    a = reg.open_session("a", "alice")
    info = reg.create(a.id, spec("one"))
    gone = reg.revoke(info.id, by="root")
    assert gone.state == "removed" and "revoked by root" in gone.message
    assert changes[-1].session_id == a.id and changes[-1].data["state"] == "removed"
    with pytest.raises(RegistryError):
        reg.revoke(info.id, by="root")
    reg.create(a.id, spec("two"))
    assert reg.remove(a.id, "two").state == "removed"
    with pytest.raises(RegistryError):
        reg.remove(a.id, "two")


def test_list_has_owner_and_state_follows_agents(reg: Registry) -> None:
    a = reg.open_session("a", "alice")
    info = reg.create(a.id, spec("one"))
    assert info.owner == "alice" and info.state == "waiting"
    agent = reg.register_agent(hello())
    assert reg.intercepts()[0].state == "active"
    assert [i.id for i in reg.snapshot_for(agent).intercepts] == [info.id]
    other = reg.register_agent(hello("bye-1", workload="bye"))
    assert reg.snapshot_for(other).intercepts == []
    reg.unregister_agent(agent.id)
    assert reg.intercepts()[0].state == "waiting"


def test_stale_agent_connection_does_not_unregister_newer_one(reg: Registry) -> None:
    old = reg.register_agent(hello())
    new = reg.register_agent(hello())
    reg.unregister_agent(old.id, old)
    assert reg.agents[new.id] is new


def test_rebuilt_session_keeps_id_and_guards_identity(reg: Registry) -> None:
    s = reg.open_session("a", "alice", session_id="abc123")
    assert s.id == "abc123"
    assert reg.open_session("a", "alice", session_id="abc123") is s
    with pytest.raises(RegistryError) as err:
        reg.open_session("m", "mallory", session_id="abc123")
    assert err.value.problem.code == "unauthorized"


def test_workload_listeners_hear_only_their_workload(reg: Registry) -> None:
    heard: list[Change] = []
    undo = reg.subscribe(heard.append, ("demo", "Deployment", "hello"))
    a = reg.open_session("a", "alice")
    reg.create(a.id, spec("bye", workload="bye"))
    assert heard == []
    reg.create(a.id, spec("hi"))
    assert [c.kind for c in heard] == ["intercept"]
    undo()
    reg.remove(a.id, "hi")
    assert len(heard) == 1
