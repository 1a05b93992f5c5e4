"""The manager's in-memory registry of sessions, agents and intercepts.

It is rebuilt after a restart from what reconnects: agents say hello again and
clients resume their session with the intercepts they want (``ClientHello``).

Conflicts are decided per workload and service port (+ protocol):

- at most one global intercept; a global one and a personal one conflict;
- two personal intercepts conflict when one's rule set (headers and path) is
  a subset of the other's: a request matching the narrower one would match
  both. Different values for one header coexist. A path prefix ``/`` is no
  rule at all.

Every change is announced to subscribers (the agent API pushes snapshots, the
client API pushes events). All methods are synchronous and run on the event
loop, so two clients racing for one port are decided here, atomically.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from core.protocol import AgentHello, InterceptInfo, InterceptSpec, InterceptsSnapshot, Problem

WorkloadKey = tuple[str, str, str]
"""(namespace, kind, name)."""


class RegistryError(Exception):
    """An operation the registry refuses; carries a ``Problem`` for the client."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


class ConflictError(RegistryError):
    def __init__(self, problem: Problem, holder: InterceptInfo) -> None:
        super().__init__(problem)
        self.holder = holder


@dataclass
class Session:
    id: str
    client: str
    identity: str
    admin: bool
    created: datetime
    last_seen: float


@dataclass
class Agent:
    id: str
    hello: AgentHello
    last_seen: float

    @property
    def workload(self) -> WorkloadKey:
        h = self.hello
        return (h.namespace, h.workload_kind, h.workload_name)


@dataclass(frozen=True)
class Change:
    """Something that changed; ``workload`` tells the agent API whom to tell."""

    kind: Literal["intercept", "agent", "session"]
    data: dict[str, Any]
    workload: WorkloadKey | None = None
    session_id: str | None = None


def workload_of(spec: InterceptSpec) -> WorkloadKey:
    return (spec.namespace, spec.workload_kind, spec.workload)


def _port_key(spec: InterceptSpec) -> tuple[str, int, str]:
    return (spec.service, spec.service_port, spec.protocol)


def _rules(spec: InterceptSpec) -> frozenset[tuple[str, str, str]]:
    rules = {("header", k.lower(), v) for k, v in spec.headers.items()}
    path = spec.path
    if path is not None and not (path.kind == "prefix" and path.value in ("", "/")):
        rules.add(("path", path.kind, path.value))
    return frozenset(rules)


def conflicts(a: InterceptSpec, b: InterceptSpec) -> bool:
    """Whether two intercepts cannot both hold (see the module docstring)."""
    if workload_of(a) != workload_of(b) or _port_key(a) != _port_key(b):
        return False
    if a.is_global or b.is_global:
        return True
    ra, rb = _rules(a), _rules(b)
    return ra <= rb or rb <= ra


def _describe(info: InterceptInfo) -> str:
    s = info.spec
    what = "global" if s.is_global else "personal"
    port = f"{s.service}:{s.service_port}/{s.protocol}"
    return f"{info.owner} holds {what} intercept {info.id!r} on {port}"


@dataclass
class Registry:
    session_ttl: float = 10.0
    """Seconds without a heartbeat after which a client's session (and intercepts) go."""
    agent_ttl: float = 20.0
    clock: Callable[[], float] = time.monotonic
    sessions: dict[str, Session] = field(default_factory=dict)
    agents: dict[str, Agent] = field(default_factory=dict)
    _intercepts: dict[str, InterceptInfo] = field(default_factory=dict)
    _listeners: list[Callable[[Change], None]] = field(default_factory=list)
    _workload_listeners: dict[WorkloadKey, list[Callable[[Change], None]]] = field(
        default_factory=dict
    )
    _by_workload: dict[WorkloadKey, dict[str, Agent]] = field(default_factory=dict)

    # ------------------------------------------------------------ subscribers

    def subscribe(
        self, listener: Callable[[Change], None], workload: WorkloadKey | None = None
    ) -> Callable[[], None]:
        """Call ``listener`` on every change (or only on ``workload``'s); returns the undo."""
        group = (
            self._listeners
            if workload is None
            else self._workload_listeners.setdefault(workload, [])
        )

        def unsubscribe() -> None:
            if listener in group:
                group.remove(listener)
            if workload is not None and not group:
                self._workload_listeners.pop(workload, None)

        group.append(listener)
        return unsubscribe

    def _emit(self, change: Change) -> None:
        for listener in list(self._listeners):
            listener(change)
        if change.workload is not None:
            for listener in list(self._workload_listeners.get(change.workload, ())):
                listener(change)

    # --------------------------------------------------------------- sessions

    def open_session(
        self, client: str, identity: str, *, admin: bool = False, session_id: str | None = None
    ) -> Session:
        """A new session, or the one named by ``session_id`` (resumed or rebuilt)."""
        now = self.clock()
        if session_id and ":" in session_id:
            raise RegistryError(
                Problem(code="bad-request", title="Bad session id", message="':' in session id")
            )
        existing = self.sessions.get(session_id or "")
        if existing is not None:
            if existing.identity != identity:
                raise RegistryError(
                    Problem(
                        code="unauthorized",
                        title="Session belongs to someone else",
                        message=f"session {session_id} belongs to {existing.identity}",
                        hint="start a new session (do not pass session_id)",
                    )
                )
            existing.last_seen = now
            existing.admin = admin
            return existing
        sid = session_id or secrets.token_hex(8)
        session = Session(sid, client, identity, admin, datetime.now(UTC), now)
        self.sessions[sid] = session
        self._emit(Change("session", {"id": sid, "identity": identity, "state": "open"}, None, sid))
        return session

    def heartbeat(self, session_id: str) -> bool:
        session = self.sessions.get(session_id)
        if session is None:
            return False
        session.last_seen = self.clock()
        return True

    def close_session(self, session_id: str, reason: str = "session closed") -> None:
        if self.sessions.pop(session_id, None) is None:
            return
        for info in [i for i in self._intercepts.values() if i.session_id == session_id]:
            self._drop(info, reason)
        data = {"id": session_id, "state": "closed", "message": reason}
        self._emit(Change("session", data, None, session_id))

    def expire(self) -> list[str]:
        """Drop sessions and agents that stopped heartbeating; returns the session ids."""
        now = self.clock()
        gone = [s.id for s in self.sessions.values() if now - s.last_seen > self.session_ttl]
        for sid in gone:
            self.close_session(sid, f"no heartbeat for {self.session_ttl:g}s")
        for agent in [a for a in self.agents.values() if now - a.last_seen > self.agent_ttl]:
            self.unregister_agent(agent.id)
        return gone

    # ------------------------------------------------------------- intercepts

    def check(self, session_id: str, spec: InterceptSpec) -> None:
        """Raise ``ConflictError`` naming the holder if ``spec`` cannot be granted."""
        own_id = f"{session_id}:{spec.name}"
        for info in self._intercepts.values():
            if info.id != own_id and conflicts(spec, info.spec):
                raise ConflictError(
                    Problem(
                        code="conflict",
                        title="Port already intercepted",
                        message=_describe(info),
                        hint="ask them to leave it, or have an admin run `waylay revoke "
                        f"{info.id}`; personal intercepts with different headers can share a port",
                    ),
                    info,
                )

    def create(self, session_id: str, spec: InterceptSpec) -> InterceptInfo:
        session = self._session(session_id)
        self.check(session_id, spec)
        iid = f"{session_id}:{spec.name}"
        previous = self._intercepts.get(iid)
        if previous is not None and workload_of(previous.spec) != workload_of(spec):
            self._drop(previous, "moved to another workload")
        info = InterceptInfo(
            id=iid,
            spec=spec,
            session_id=session_id,
            owner=session.identity,
            created=previous.created if previous else datetime.now(UTC),
        )
        self._intercepts[iid] = info
        info = self._with_state(info)
        self._emit(Change("intercept", info.model_dump(mode="json"), workload_of(spec), session_id))
        return info

    def remove(self, session_id: str, name: str) -> InterceptInfo:
        info = self._intercepts.get(f"{session_id}:{name}")
        if info is None:
            raise RegistryError(
                Problem(
                    code="not-found",
                    title="No such intercept",
                    message=f"this session has no intercept named {name!r}",
                    hint="`waylay list` shows the intercepts in the cluster",
                )
            )
        return self._drop(info, "removed by its owner")

    def revoke(self, intercept_id: str, by: str) -> InterceptInfo:
        info = self._intercepts.get(intercept_id)
        if info is None:
            raise RegistryError(
                Problem(
                    code="not-found",
                    title="No such intercept",
                    message=f"no intercept with id {intercept_id!r}",
                    hint="ids look like <session>:<name>; `waylay list -A -o json` shows them",
                )
            )
        return self._drop(info, f"revoked by {by}")

    def intercepts(self, workload: WorkloadKey | None = None) -> list[InterceptInfo]:
        items = [
            self._with_state(i)
            for i in self._intercepts.values()
            if workload is None or workload_of(i.spec) == workload
        ]
        return sorted(items, key=lambda i: i.created)

    def _drop(self, info: InterceptInfo, reason: str) -> InterceptInfo:
        self._intercepts.pop(info.id, None)
        gone = info.model_copy(update={"state": "removed", "message": reason})
        self._emit(
            Change(
                "intercept", gone.model_dump(mode="json"), workload_of(info.spec), info.session_id
            )
        )
        return gone

    def _with_state(self, info: InterceptInfo) -> InterceptInfo:
        if self.agents_of(workload_of(info.spec)):
            return info.model_copy(update={"state": "active", "message": ""})
        return info.model_copy(
            update={"state": "waiting", "message": "no agent has registered yet"}
        )

    def _session(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise RegistryError(
                Problem(
                    code="no-session",
                    title="Session expired",
                    message=f"session {session_id} is gone (no heartbeat in time)",
                    hint="reconnect; your intercepts are re-created from your client",
                )
            )
        return session

    # ----------------------------------------------------------------- agents

    def register_agent(self, hello: AgentHello) -> Agent:
        agent_id = f"{hello.namespace}/{hello.pod}"
        agent = Agent(agent_id, hello, self.clock())
        self._forget(agent_id)
        self.agents[agent_id] = agent
        self._by_workload.setdefault(agent.workload, {})[agent_id] = agent
        self._emit(Change("agent", self._agent_data(agent, "registered"), agent.workload))
        return agent

    def agent_heartbeat(self, agent_id: str) -> bool:
        agent = self.agents.get(agent_id)
        if agent is None:
            return False
        agent.last_seen = self.clock()
        return True

    def keep_alive(self, agent: Agent) -> None:
        """A heartbeat from a live connection; re-registers an agent that had expired."""
        agent.last_seen = self.clock()
        if self.agents.get(agent.id) is not agent:
            self._forget(agent.id)
            self.agents[agent.id] = agent
            self._by_workload.setdefault(agent.workload, {})[agent.id] = agent
            self._emit(Change("agent", self._agent_data(agent, "registered"), agent.workload))

    def unregister_agent(self, agent_id: str, agent: Agent | None = None) -> None:
        current = self.agents.get(agent_id)
        if current is None or (agent is not None and current is not agent):
            return  # a newer connection of the same pod took over
        self._forget(agent_id)
        self._emit(Change("agent", self._agent_data(current, "gone"), current.workload))

    def _forget(self, agent_id: str) -> None:
        agent = self.agents.pop(agent_id, None)
        if agent is not None:
            group = self._by_workload.get(agent.workload, {})
            group.pop(agent_id, None)
            if not group:
                self._by_workload.pop(agent.workload, None)

    def agents_of(self, workload: WorkloadKey) -> list[Agent]:
        return list(self._by_workload.get(workload, {}).values())

    def snapshot_for(self, agent: Agent) -> InterceptsSnapshot:
        return InterceptsSnapshot(intercepts=self.intercepts(agent.workload))

    @staticmethod
    def _agent_data(agent: Agent, state: str) -> dict[str, Any]:
        h = agent.hello
        return {
            "id": agent.id,
            "pod": h.pod,
            "namespace": h.namespace,
            "pod_ip": h.pod_ip,
            "workload_kind": h.workload_kind,
            "workload": h.workload_name,
            "tunnel_port": h.tunnel_port,
            "state": state,
        }

    def agent_info(self, agent: Agent) -> dict[str, Any]:
        data = self._agent_data(agent, "registered")
        data["ports"] = [p.model_dump() for p in agent.hello.ports]
        data["env"] = agent.hello.env
        return data
