"""The client API: ``GET /v1/client`` (WebSocket) on the manager pod's loopback.

Clients reach it through a port-forward, so Kubernetes RBAC on
``pods/portforward`` is the first gate; in team mode the ``ClientHello`` must
also carry a valid API key. Conversation:

1. ``ClientHello`` -> ``ClientWelcome`` (with the session id), or ``ErrorReply``
   (``version-skew``, ``unauthorized``) and close. A hello that names a
   ``session_id`` and lists ``intercepts`` rebuilds that session (after a
   manager restart); intercepts that now conflict are reported as events.
2. ``Heartbeat`` every few seconds keeps the session; without it the session
   and its intercepts go after ``Registry.session_ttl``.
3. ``Request`` -> ``Response`` by id, see :data:`OPS`; long ones (prepare) run
   concurrently and stream ``Event(kind="progress")``.
4. ``Event`` pushes: the session's own intercepts changing (e.g. revoked), and
   intercepts and agents of the workloads it prepared or intercepts.

Ops (``Request.op``: params -> result; errors are ``Problem`` codes):

- ``prepare``: ``{spec: InterceptSpec}`` -> ``{workload, port: TakeoverPort, agents:
  [agent]}``, with ``Event(kind="progress", data={request, step, message, ...})``
  (steps ``annotated``, ``waiting``, ``replacing``, ``service``, ``ready``);
  ``conflict``, ``not-found``, ``bad-workload``, ``agent-not-arriving`` (title
  names the reason: "The webhook was not called", "An image cannot be pulled", ...).
- ``create``: ``{spec}`` -> ``InterceptInfo`` (same name again: moved); ``conflict``.
- ``remove``: ``{name}`` -> ``InterceptInfo`` (state ``removed``); ``not-found``.
- ``list``: ``{}`` -> every intercept in the cluster: ``InterceptInfo`` + ``age_seconds``.
- ``revoke``: ``{id}`` -> ``InterceptInfo``; admin only (``forbidden``).
- ``agents``: ``{namespace?, workload?, workload_kind?}`` -> ``[{id, pod, namespace,
  pod_ip, workload_kind, workload, tunnel_port, state, ports, env}]``.
- ``apikey-create``: ``{user, admin?}`` -> ``{id, user, admin, created, key}`` (the
  key is shown this once); ``apikey-list`` -> ``[{id, user, admin, created}]``;
  ``apikey-revoke``: ``{id}`` -> ``{id, sessions_ended}``; admin only.
- ``set-mode``: ``{mode}`` -> ``{mode}``; admin only; ``precondition`` when team
  mode would have no admin key.
- ``preview-create`` / ``preview-revoke`` / ``preview-list``: preview URLs
  ``<token>.D`` served by the manager's router (``webhook.preview``, see
  :meth:`PreviewRouter.handle_op`); ``unavailable`` when the manager has no
  preview domain (the client then serves previews from the workstation).

In single-user mode every session is an admin (RBAC on ``pods/portforward``
already decided who may talk to the manager); in team mode the key says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web
from pydantic import BaseModel, ValidationError

from core.errors import WaylayError
from core.protocol import (
    PROTOCOL_VERSION,
    ClientHello,
    ClientWelcome,
    Event,
    Heartbeat,
    InterceptSpec,
    Problem,
    Request,
    Response,
    major,
)
from webhook.apikeys import ApiKeyRecord, Mode, SettingsStore, issue_key, verify_key
from webhook.preview import PREVIEW_OPS, PreviewRouter
from webhook.registry import Change, Registry, RegistryError, Session, WorkloadKey, workload_of
from webhook.wsconn import Peer, PeerGone, accept, bad_frame_problem

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0
Progress = Callable[[dict[str, Any]], Awaitable[None]]


class Preparer(Protocol):
    """Makes agents arrive for a workload (``webhook.rollout``)."""

    async def prepare(self, spec: InterceptSpec, progress: Progress) -> dict[str, Any]: ...


def problem(code: str, title: str, message: str, hint: str = "") -> RegistryError:
    return RegistryError(Problem(code=code, title=title, message=message, hint=hint))


class _SpecParams(BaseModel):
    spec: InterceptSpec


class _NameParams(BaseModel):
    name: str


class _IdParams(BaseModel):
    id: str


class _KeyParams(BaseModel):
    user: str
    admin: bool = False


class _ModeParams(BaseModel):
    mode: Mode


class _AgentsParams(BaseModel):
    namespace: str | None = None
    workload: str | None = None
    workload_kind: str | None = None


@dataclass
class ClientApi:
    registry: Registry
    store: SettingsStore
    preparer: Preparer | None = None
    manager_version: str = PROTOCOL_VERSION
    router: PreviewRouter | None = None
    """The preview router, when the manager has a preview domain."""
    _key_of_session: dict[str, str] = field(default_factory=dict)
    _peers: dict[str, Peer] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/client", self._handle)
        return app

    # --------------------------------------------------------------- handshake

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        peer, hello = await accept(request, ClientHello, HELLO_TIMEOUT)
        ws = peer.ws
        if hello is None:
            return ws
        try:
            session, mode, rejected = await self._open(hello)
        except RegistryError as e:
            p = e.problem
            await peer.refuse(p.code, p.title, p.message, p.hint)
            return ws
        await peer.send(
            ClientWelcome(
                session_id=session.id,
                identity=session.identity,
                mode=mode,
                manager_version=self.manager_version,
            )
        )
        for event in rejected:
            await peer.send(event)
        await self._serve(peer, session)
        return ws

    async def _open(self, hello: ClientHello) -> tuple[Session, Mode, list[Event]]:
        if major(hello.version) != major(PROTOCOL_VERSION):
            raise problem(
                "version-skew",
                "Client and manager versions differ",
                f"client speaks {hello.version}, manager {PROTOCOL_VERSION}",
                "upgrade the older side: `waylay install` upgrades the manager",
            )
        settings = await self.store.load()
        key: ApiKeyRecord | None = None
        if settings.mode == "team":
            key = verify_key(hello.api_key, settings.keys)
            if key is None:
                raise problem(
                    "unauthorized",
                    "API key required" if not hello.api_key else "API key not valid",
                    "this cluster runs waylay in team mode; every session needs a valid API key"
                    + ("" if not hello.api_key else " (this one is unknown or was revoked)"),
                    "ask your cluster admin for a key, then `waylay login`",
                )
        identity = key.user if key else hello.client
        session = self.registry.open_session(
            hello.client, identity, admin=key.admin if key else True, session_id=hello.session_id
        )
        if key is not None:
            self._key_of_session[session.id] = key.id
        rejected: list[Event] = []
        for spec in hello.intercepts:
            try:
                self.registry.create(session.id, spec)
            except RegistryError as e:
                rejected.append(
                    Event(
                        kind="intercept",
                        data={
                            "id": f"{session.id}:{spec.name}",
                            "state": "failed",
                            "message": e.problem.message,
                            "code": e.problem.code,
                        },
                    )
                )
        return session, settings.mode, rejected

    # ------------------------------------------------------------ the session

    async def _serve(self, peer: Peer, session: Session) -> None:
        watched: set[WorkloadKey] = {
            workload_of(i.spec) for i in self.registry.intercepts() if i.session_id == session.id
        }
        outbox: asyncio.Queue[Event] = asyncio.Queue(maxsize=1000)

        def on_change(change: Change) -> None:
            mine = change.session_id == session.id
            if mine or (change.workload in watched and change.kind != "session"):
                with contextlib.suppress(asyncio.QueueFull):
                    outbox.put_nowait(Event(kind=change.kind, data=change.data))

        async def sender() -> None:
            while True:
                event = await outbox.get()
                await peer.send(event)
                if event.kind == "session" and event.data.get("state") == "closed":
                    await peer.ws.close()  # expired or its key was revoked

        unsubscribe = self.registry.subscribe(on_change)
        self._peers[session.id] = peer
        tasks: set[asyncio.Task[None]] = {asyncio.create_task(sender())}
        try:
            while True:
                try:
                    msg = await peer.receive()
                except ValidationError as e:
                    log.warning("session %s sent a malformed frame: %s", session.id, e)
                    continue
                if not self.registry.heartbeat(session.id):
                    await peer.refuse(
                        "no-session",
                        "Session expired",
                        f"session {session.id} ended (no heartbeat in time, or revoked)",
                        "reconnect with your session id and intercepts to resume",
                    )
                    return
                if isinstance(msg, Heartbeat):
                    continue
                if isinstance(msg, Request):
                    task = asyncio.create_task(self._answer(peer, session, msg, watched))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        except PeerGone:
            pass
        finally:
            unsubscribe()
            if self._peers.get(session.id) is peer:
                del self._peers[session.id]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _answer(
        self, peer: Peer, session: Session, req: Request, watched: set[WorkloadKey]
    ) -> None:
        try:
            result = await self._dispatch(session, req, watched)
            response = Response(id=req.id, ok=True, result=result)
        except RegistryError as e:
            response = Response(id=req.id, ok=False, error=e.problem)
        except ValidationError as e:
            response = Response(id=req.id, ok=False, error=bad_frame_problem(e))
        except WaylayError as e:  # the manager's own API calls (RBAC, API errors)
            log.warning("request %s failed: %s", req.op, e)
            response = Response(
                id=req.id,
                ok=False,
                error=Problem(code=e.code, title=e.title, message=e.detail or e.title, hint=e.hint),
            )
        except Exception as e:
            log.exception("request %s failed", req.op)
            response = Response(
                id=req.id,
                ok=False,
                error=Problem(
                    code="internal",
                    title=f"{req.op} failed",
                    message=f"{type(e).__name__}: {e}",
                    hint="see the manager's log: `kubectl -n waylay logs deploy/waylay-manager`",
                ),
            )
        await peer.send(response)

    # ------------------------------------------------------------------- ops

    async def _dispatch(self, session: Session, req: Request, watched: set[WorkloadKey]) -> Any:
        p = req.params
        reg = self.registry
        if req.op in PREVIEW_OPS:
            if self.router is None:
                raise problem(
                    "unavailable",
                    "Preview URLs are not served by this manager",
                    "the traffic manager was installed without a preview domain",
                    "serve the preview URL from your machine, or reinstall with "
                    "`waylay install --preview-domain D` (a DNS wildcard *.D pointing at "
                    "the cluster's ingress)",
                )
            return await self.router.handle_op(session, req.op, p)
        match req.op:
            case "prepare":
                spec = _SpecParams.model_validate(p).spec
                watched.add(workload_of(spec))
                reg.check(session.id, spec)
                if self.preparer is None:
                    raise problem(
                        "unavailable",
                        "Prepare is not available",
                        "this manager runs without cluster access",
                    )

                async def progress(data: dict[str, Any]) -> None:
                    await self._peers.get(session.id, _NoPeer()).send(
                        Event(kind="progress", data={"request": req.id, **data})
                    )

                return await self.preparer.prepare(spec, progress)
            case "create":
                spec = _SpecParams.model_validate(p).spec
                watched.add(workload_of(spec))
                return reg.create(session.id, spec).model_dump(mode="json")
            case "remove":
                return reg.remove(session.id, _NameParams.model_validate(p).name).model_dump(
                    mode="json"
                )
            case "list":
                now = datetime.now(UTC)
                return [
                    {**i.model_dump(mode="json"), "age_seconds": (now - i.created).total_seconds()}
                    for i in reg.intercepts()
                ]
            case "revoke":
                self._require_admin(session, "revoke someone else's intercept")
                target = _IdParams.model_validate(p).id
                return reg.revoke(target, by=session.identity).model_dump(mode="json")
            case "agents":
                q = _AgentsParams.model_validate(p)
                return [
                    reg.agent_info(a)
                    for a in reg.agents.values()
                    if (q.namespace is None or a.hello.namespace == q.namespace)
                    and (q.workload is None or a.hello.workload_name == q.workload)
                    and (q.workload_kind is None or a.hello.workload_kind == q.workload_kind)
                ]
            case "apikey-create":
                self._require_admin(session, "issue API keys")
                kp = _KeyParams.model_validate(p)
                try:
                    plaintext, record = issue_key(kp.user, admin=kp.admin)
                except ValueError as e:
                    raise problem("bad-request", "Bad user name", str(e))
                await self.store.add_key(record)
                return {**record.public(), "key": plaintext}
            case "apikey-list":
                self._require_admin(session, "list API keys")
                keys = (await self.store.load()).keys.values()
                return [k.public() for k in keys]
            case "apikey-revoke":
                self._require_admin(session, "revoke API keys")
                key_id = _IdParams.model_validate(p).id
                if not await self.store.remove_key(key_id):
                    raise problem("not-found", "No such key", f"no API key with id {key_id!r}")
                ended = [s for s, k in self._key_of_session.items() if k == key_id]
                for sid in ended:
                    del self._key_of_session[sid]
                    reg.close_session(sid, "API key revoked")
                return {"id": key_id, "sessions_ended": len(ended)}
            case "set-mode":
                self._require_admin(session, "switch modes")
                mode = _ModeParams.model_validate(p).mode
                settings = await self.store.load()
                if mode == "team" and not any(k.admin for k in settings.keys.values()):
                    raise problem(
                        "precondition",
                        "No admin key yet",
                        "team mode needs at least one admin API key, or nobody could manage it",
                        "first: `waylay apikey create --user NAME --admin`, then `waylay login`",
                    )
                await self.store.set_mode(mode)
                return {"mode": mode}
        raise problem("bad-request", "Unknown operation", f"unknown op {req.op!r}")

    def _require_admin(self, session: Session, what: str) -> None:
        if not session.admin:
            raise problem(
                "forbidden",
                "Admin key required",
                f"{session.identity} may not {what}: their API key is not an admin key",
                "ask an admin, or use an admin key (`waylay login`)",
            )


class _NoPeer:
    async def send(self, msg: BaseModel) -> None:
        return None
