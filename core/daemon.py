"""The per-user daemon: holds sessions and intercepts across CLI calls.

Started on demand (``python -m core.daemon``) by the CLI or the TUI, one per
user, listening on a Unix socket in a 0700 directory with mode 0600. It keeps
one ``core.session.Session`` per kubeconfig context, so ``waylay intercept``
returns while the intercept lives on, ``waylay leave`` ends it, and the TUI
sees what the CLI made. ``quit`` leaves every intercept and stops it. The
wire format is ``core.daemon_protocol``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream
from pydantic import ValidationError

from core import config, credentials
from core.daemon_previews import PreviewAnswers, Previews
from core.daemon_protocol import (
    DaemonError,
    DaemonProgress,
    DaemonPush,
    DaemonReply,
    DaemonRequest,
    socket_path,
)
from core.daemon_state import SessionNote, SessionRecord
from core.discovery import snapshot_workloads
from core.errors import (
    DaemonUnavailable,
    NothingListening,
    PortHeld,
    ResolveError,
    WaylayError,
)
from core.intercept import InterceptRequest, build_spec
from core.kube import Kube
from core.models import WorkloadInfo
from core.preview_models import PreviewError
from core.protocol import PROTOCOL_VERSION, InterceptInfo, InterceptSpec, major
from core.session import Session, kube_connector, kube_opener

__all__ = ["ContextHandle", "Daemon", "kube_context", "main"]

log = logging.getLogger("waylay.daemon")
Sender = Callable[[DaemonReply | DaemonProgress | DaemonPush], Coroutine[Any, Any, None]]
MAX_LINE = 1 << 20


@dataclass
class ContextHandle:
    """One kubeconfig context the daemon has a session in."""

    name: str
    default_namespace: str
    session: Session
    workloads: Callable[[str], Awaitable[list[WorkloadInfo]]]
    close: Callable[[], None] = lambda: None
    kube: Kube | None = None
    """For preview URLs (None: this context cannot make them)."""
    previews: Previews | None = None


ContextFactory = Callable[[str | None, str | None], Awaitable[ContextHandle]]
"""(context, kubeconfig) -> a handle whose session is not started yet."""
Resolver = Callable[[str | None, str | None], tuple[str, str]]
"""(context or None, kubeconfig files or None) -> the explicit (context name, files)."""


async def kube_context(context: str | None, kubeconfig: str | None) -> ContextHandle:
    """The production factory: the context's manager through port-forwards."""
    kube = await anyio.to_thread.run_sync(Kube.from_kubeconfig, kubeconfig, context)
    session = Session(
        context=kube.context.name,
        connector=kube_connector(kube),
        opener=kube_opener(kube),
        api_key=credentials.get_api_key(kube.context.name),
    )

    async def workloads(namespace: str) -> list[WorkloadInfo]:
        return await anyio.to_thread.run_sync(
            snapshot_workloads, kube, namespace, abandon_on_cancel=True
        )

    return ContextHandle(
        kube.context.name, kube.namespace, session, workloads, kube.close, kube=kube
    )


def _error(err: WaylayError) -> DaemonError:
    data = err.to_dict()
    return DaemonError(
        code=data["code"],
        title=err.title,
        detail=err.detail,
        hint=err.hint,
        severity="warning" if data["severity"] == "warning" else "error",
    )


def _with_url(info: InterceptInfo, url: str) -> InterceptInfo:
    return info.model_copy(update={"spec": info.spec.model_copy(update={"preview_url": url})})


def _listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1.0):
            return True
    except OSError:
        return False


@dataclass
class Daemon:
    path: Path = field(default_factory=socket_path)
    factory: ContextFactory = kube_context
    resolve: Resolver | None = None
    """Makes "the current context of these files" explicit, so a client that names the
    context and one that does not share a session (``config.resolve`` in production)."""
    contexts: dict[tuple[str | None, str | None], ContextHandle] = field(default_factory=dict)
    _tg: anyio.abc.TaskGroup | None = None
    _stop: anyio.Event = field(default_factory=anyio.Event)
    _subscribers: list[Callable[[DaemonPush], None]] = field(default_factory=list)
    _watching: int = 0
    """Subscribers watching all traffic: while any, every session watches all (metadata)."""
    _opening: dict[tuple[str | None, str | None], anyio.Lock] = field(default_factory=dict)
    _stale: dict[tuple[str | None, str | None], str] = field(default_factory=dict)
    """Session ids a dead predecessor held, by context: the first use resumes and empties them."""

    @property
    def note(self) -> SessionNote:
        """Our manager sessions, for a successor if we die without ``quit``."""
        return SessionNote(self.path.with_name(self.path.name + ".sessions.json"))

    # ---------------------------------------------------------------- serving

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[Path] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        if self.path.exists():
            if await self._alive():
                raise DaemonUnavailable(str(self.path), "another waylay daemon is running")
            self.path.unlink()
        old = os.umask(0o177)
        try:
            listener = await anyio.create_unix_listener(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        try:
            async with listener, anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._accept, listener)
                for record in self.note.take():
                    self._stale[(record.context, record.kubeconfig)] = record.session_id
                    tg.start_soon(self._sweep, record)
                task_status.started(self.path)
                await self._stop.wait()
                tg.cancel_scope.cancel()
        finally:
            with contextlib.suppress(OSError):
                self.path.unlink()
            for handle in self.contexts.values():
                handle.close()

    async def stopped(self) -> None:
        """Return once the daemon was told to stop (``quit``, and its client hung up)."""
        await self._stop.wait()

    async def _alive(self) -> bool:
        try:
            with anyio.fail_after(2):
                stream = await anyio.connect_unix(self.path)
            await stream.aclose()
            return True
        except (OSError, TimeoutError):
            return False

    async def _accept(self, listener: anyio.abc.Listener[anyio.abc.SocketStream]) -> None:
        await listener.serve(self._connection)

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        lock = anyio.Lock()

        async def send(line: DaemonReply | DaemonProgress | DaemonPush) -> None:
            async with lock:
                await stream.send(line.model_dump_json().encode() + b"\n")

        greeted = False
        quit_answered = anyio.Event()
        async with stream, anyio.create_task_group() as tg:
            while True:
                try:
                    raw = await reader.receive_until(b"\n", MAX_LINE)
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                    break
                try:
                    req = DaemonRequest.model_validate_json(raw)
                except ValidationError as exc:
                    await send(
                        DaemonReply(
                            id=-1,
                            ok=False,
                            error=DaemonError(
                                code="bad-request",
                                title="Malformed request",
                                detail=str(exc),
                                hint="Speak the daemon's line protocol (core/daemon_protocol.py); "
                                "if waylay sent this, restart the daemon with `waylay quit`.",
                            ),
                        )
                    )
                    continue
                if not greeted and req.op != "hello":
                    await send(
                        DaemonReply(
                            id=req.id,
                            ok=False,
                            error=DaemonError(code="bad-request", title="Say hello first"),
                        )
                    )
                    continue
                greeted = True
                if req.op == "subscribe":
                    self._subscribe(tg, send, watch_all=bool(req.params.get("watch_all")))
                    await send(DaemonReply(id=req.id, ok=True))
                    continue
                tg.start_soon(self._answer, req, send, quit_answered)
            tg.cancel_scope.cancel()
        if quit_answered.is_set():
            # stop once the client hung up: cancelling a socket read that is about to
            # complete trips anyio ("InvalidStateError: invalid state")
            self._stop.set()

    def _subscribe(
        self,
        tg: anyio.abc.TaskGroup,
        send: Sender,
        *,
        watch_all: bool = False,
    ) -> None:
        """Pushes until the connection ends; traffic pushes carry ``mine``, and those of
        other sessions (metadata only) go to ``watch_all`` subscribers alone."""
        out, inbox = anyio.create_memory_object_stream[DaemonPush](1024)

        def push(item: DaemonPush) -> None:
            if item.topic == "traffic" and not watch_all and not item.data.get("mine", True):
                return
            with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError):
                out.send_nowait(item)

        async def pump() -> None:
            self._subscribers.append(push)
            if watch_all:
                self._watching += 1
                await self._apply_watch()
            try:
                async with inbox:
                    async for item in inbox:
                        await send(item)
            finally:
                self._subscribers.remove(push)
                if watch_all:
                    self._watching -= 1
                    with anyio.CancelScope(shield=True):
                        await self._apply_watch()

        tg.start_soon(pump)

    async def _apply_watch(self) -> None:
        for handle in list(self.contexts.values()):
            with contextlib.suppress(WaylayError):
                await handle.session.set_watch_all(self._watching > 0)

    def _publish(self, topic: str, data: dict[str, Any]) -> None:
        push = DaemonPush(topic=topic, data=data)  # type: ignore[arg-type]
        for subscriber in list(self._subscribers):
            subscriber(push)

    async def _answer(self, req: DaemonRequest, send: Sender, quit_answered: anyio.Event) -> None:
        warnings: list[DaemonError] = []
        out, inbox = anyio.create_memory_object_stream[str](256)
        drained = anyio.Event()

        def progress(message: str) -> None:
            with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
                out.send_nowait(message)

        async def pump() -> None:
            try:
                async with inbox:
                    async for message in inbox:
                        with contextlib.suppress(anyio.BrokenResourceError, OSError):
                            await send(DaemonProgress(id=req.id, message=message))
            finally:
                drained.set()

        assert self._tg is not None
        self._tg.start_soon(pump)
        try:
            try:
                result = await self._dispatch(req, progress, warnings)
            finally:
                out.close()
                await drained.wait()
            reply = DaemonReply(id=req.id, ok=True, result=result, warnings=warnings)
        except WaylayError as err:
            reply = DaemonReply(id=req.id, ok=False, error=_error(err))
        except (ValueError, ValidationError) as exc:
            title, *rest = str(exc).splitlines() or [type(exc).__name__]
            reply = DaemonReply(
                id=req.id,
                ok=False,
                error=DaemonError(
                    code="bad-request",
                    title=title,
                    detail="\n".join(rest),
                    hint="Fix the value named above and try again "
                    "(`waylay COMMAND --help` describes every flag).",
                ),
            )
        except Exception as exc:
            log.exception("%s failed", req.op)
            reply = DaemonReply(
                id=req.id,
                ok=False,
                error=DaemonError(
                    code="internal",
                    title=f"{req.op} failed: {type(exc).__name__}: {exc}",
                    hint="This is a bug; the daemon's log has the details.",
                ),
            )
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await send(reply)
        if req.op == "quit" and reply.ok:
            quit_answered.set()
            await anyio.sleep(2.0)  # a client that keeps its connection open: stop anyway
            self._stop.set()

    # ------------------------------------------------------------------- ops

    async def _dispatch(
        self, req: DaemonRequest, progress: Callable[[str], None], warnings: list[DaemonError]
    ) -> Any:
        p = req.params
        match req.op:
            case "hello":
                theirs = str(p.get("version", ""))
                if major(theirs) != major(PROTOCOL_VERSION):
                    raise DaemonUnavailable(
                        str(self.path),
                        f"the daemon speaks {PROTOCOL_VERSION}, this waylay {theirs}",
                    )
                return {"version": PROTOCOL_VERSION, "pid": os.getpid()}
            case "status":
                return {
                    "pid": os.getpid(),
                    "version": PROTOCOL_VERSION,
                    "sessions": [self._session_status(h) for h in self.contexts.values()],
                }
            case "intercept":
                return await self._intercept(p, progress, warnings)
            case "leave":
                return await self._leave(str(p["name"]), p.get("context"))
            case "intercepts":
                if p.get("all"):
                    handle = await self._context(p.get("context"), p.get("kubeconfig"))
                    everyone = await handle.session.all_intercepts()
                    return [i.model_dump(mode="json") for i in everyone]
                return [
                    self._shown(h, i).model_dump(mode="json")
                    for h in self.contexts.values()
                    for i in h.session.infos.values()
                ]
            case "env":
                return await self._env(str(p["name"]), p.get("context"))
            case "session":
                handle = await self._context(p.get("context"), p.get("kubeconfig"))
                return self._session_status(handle)
            case "revoke":
                handle = await self._context(p.get("context"), p.get("kubeconfig"))
                return await handle.session.request("revoke", {"id": str(p["id"])})
            case "quit":
                for handle in self.contexts.values():
                    await handle.session.leave_all()
                    handle.session.stop()
                self.note.clear()
                return {"left": True}
        raise ValueError(f"unknown op {req.op!r}")

    @staticmethod
    def _shown(handle: ContextHandle, info: InterceptInfo) -> InterceptInfo:
        """With the preview URL this daemon serves for it, if any."""
        url = handle.previews.url_of(info.id) if handle.previews else None
        return _with_url(info, url) if url and not info.spec.preview_url else info

    def _session_status(self, handle: ContextHandle) -> dict[str, Any]:
        s = handle.session
        return {
            "context": handle.name,
            "session_id": s.session_id,
            "connected": s.connected.is_set(),
            "mode": s.welcome.mode if s.welcome else None,
            "identity": s.welcome.identity if s.welcome else None,
            "manager_version": s.welcome.manager_version if s.welcome else None,
            "last_error": s.last_error.title if s.last_error else None,
            "intercepts": [
                self._shown(handle, i).model_dump(mode="json") for i in s.infos.values()
            ],
        }

    async def _context(self, context: str | None, kubeconfig: str | None) -> ContextHandle:
        """The context's handle, its session opened on first use (one per context even
        when requests race), taking over a dead predecessor's session if there is one."""
        if self.resolve is not None:
            context, kubeconfig = self.resolve(context, kubeconfig)
        key = (context, kubeconfig)
        async with self._opening.setdefault(key, anyio.Lock()):
            handle = self.contexts.get(key)
            if handle is not None:
                return handle
            resume = self._stale.pop(key, None)
            try:
                handle = await self._open(context, kubeconfig, resume)
            except WaylayError as exc:
                if not resume:
                    raise
                # not ours to take (another API key, say): start afresh; its TTL ends it
                log.warning("could not take over session %s: %s", resume, exc.title)
                resume = None
                handle = await self._open(context, kubeconfig, None)
            assert self._tg is not None
            self._tg.start_soon(self._relay, handle)
            self.contexts[key] = handle
            if self._watching:
                with contextlib.suppress(WaylayError):
                    await handle.session.set_watch_all(True)
            if resume:
                await self._drop_leftovers(handle)
            if handle.session.session_id:
                self.note.add(
                    SessionRecord(
                        context=context, kubeconfig=kubeconfig, session_id=handle.session.session_id
                    )
                )
            return handle

    async def _open(
        self, context: str | None, kubeconfig: str | None, resume: str | None
    ) -> ContextHandle:
        """A new handle with its session running (resuming session ``resume`` if given)."""
        handle = await self.factory(context, kubeconfig)
        if resume:
            handle.session.session_id = resume
        assert self._tg is not None
        try:
            await self._tg.start(handle.session.run)
        except BaseException:
            handle.close()
            raise
        return handle

    async def _drop_leftovers(self, handle: ContextHandle) -> None:
        """Remove what a resumed session holds that this daemon did not ask for."""
        session = handle.session
        for info in await session.all_intercepts():
            if info.session_id == session.session_id and info.spec.name not in session.desired:
                with contextlib.suppress(WaylayError):
                    await session.request("remove", {"name": info.spec.name})
                    log.info("removed %s, left by a daemon that died", info.id)

    async def _sweep(self, record: SessionRecord) -> None:
        """Take over a dead daemon's session and empty it (else it lingers until its TTL)."""
        try:
            await self._context(record.context, record.kubeconfig)
        except Exception as exc:  # the cluster may be gone: the manager's TTL cleans up then
            log.warning("could not clean up session %s: %s", record.session_id, exc)

    async def _relay(self, handle: ContextHandle) -> None:
        async def traffic() -> None:
            session = handle.session
            async for event in session.traffic(others=True):
                data = {"context": handle.name, "mine": session.is_mine(event)}
                self._publish("traffic", {**data, **event.model_dump(mode="json")})

        async def events() -> None:
            async for event in handle.session.events():
                if event.kind in ("intercept", "session"):
                    self._publish(event.kind, {"context": handle.name, **event.data})

        async with anyio.create_task_group() as tg:
            tg.start_soon(traffic)
            tg.start_soon(events)

    async def _intercept(
        self, p: dict[str, Any], progress: Callable[[str], None], warnings: list[DaemonError]
    ) -> dict[str, Any]:
        """``request`` (the CLI's flags) or a ready ``spec`` (the TUI's wizard) plus
        optional ``preview`` answers ({host, port, tls, l5})."""
        handle = await self._context(p.get("context"), p.get("kubeconfig"))
        session = handle.session
        welcome = session.welcome
        if "spec" in p:
            spec = InterceptSpec.model_validate(p["spec"])
            answers = p.get("preview")
            wanted: bool | None = answers is not None
            preview = PreviewAnswers(**answers) if answers else PreviewAnswers()
        else:
            req = InterceptRequest.model_validate(p["request"])
            namespace = req.namespace or handle.default_namespace
            progress(f"looking up workloads in {namespace}")
            workloads = await handle.workloads(namespace)
            spec = build_spec(
                req,
                workloads,
                default_namespace=handle.default_namespace,
                session_id=session.session_id or "",
                mode=welcome.mode if welcome else "single-user",
            )
            wanted = req.preview_url
            preview = PreviewAnswers(
                req.ingress_host, req.ingress_port, req.ingress_tls, req.ingress_l5
            )
        self._check_port_free(spec.name, spec.local_address, spec.local_port)
        info = await session.intercept(spec, progress)
        self._publish("intercept", {"context": handle.name, **info.model_dump(mode="json")})
        if not await anyio.to_thread.run_sync(_listening, spec.local_address, spec.local_port):
            warnings.append(_error(NothingListening(spec.local_address, spec.local_port)))
        if wanted is None:
            wanted = welcome is not None and welcome.mode == "team"
        if wanted:
            try:
                info = await self._preview(handle, info, preview, progress)
            except WaylayError as err:
                if p.get("preview") is not None or p.get("request", {}).get("preview_url"):
                    raise
                warnings.append(_error(err))  # a mode default, not something asked for
        return {"context": handle.name, "intercept": info.model_dump(mode="json")}

    async def _preview(
        self,
        handle: ContextHandle,
        info: InterceptInfo,
        answers: PreviewAnswers,
        progress: Callable[[str], None],
    ) -> InterceptInfo:
        if handle.kube is None:
            raise PreviewError(
                "Preview URLs need a cluster connection", "Use a kubeconfig context."
            )
        if handle.previews is None:
            assert self._tg is not None
            handle.previews = Previews(handle.kube, self._tg)
        url = await handle.previews.create(handle.session, info, answers)
        progress(f"preview URL ready: {url}")
        return _with_url(info, url)

    def _check_port_free(self, name: str, address: str, port: int) -> None:
        for handle in self.contexts.values():
            for other in handle.session.desired.values():
                if (other.local_address, other.local_port) == (
                    address,
                    port,
                ) and other.name != name:
                    raise PortHeld(port, f"intercept {other.name!r} ({handle.name})")

    def _find(self, name: str, context: str | None) -> ContextHandle:
        owners = [
            h
            for h in self.contexts.values()
            if name in h.session.desired and (context is None or h.name == context)
        ]
        if not owners:
            known = sorted(n for h in self.contexts.values() for n in h.session.desired)
            raise ResolveError(
                f"No intercept named {name!r}",
                f"Your intercepts: {', '.join(known) or '(none)'}; `waylay status` lists them.",
            )
        return owners[0]

    async def _leave(self, name: str, context: str | None) -> dict[str, Any]:
        handle = self._find(name, context)
        info: InterceptInfo = await handle.session.leave(name)
        if handle.previews is not None:
            handle.previews.end(info.id)
        self._publish("intercept", {"context": handle.name, **info.model_dump(mode="json")})
        return {"context": handle.name, "intercept": info.model_dump(mode="json")}

    async def _env(self, name: str, context: str | None) -> dict[str, str]:
        handle = self._find(name, context)
        spec = handle.session.desired[name]
        agents = await handle.session.agents(spec)
        for agent in agents:
            env = agent.get("env") or {}
            if env:
                return {str(k): str(v) for k, v in env.items()}
        return {}


def main() -> None:
    """``python -m core.daemon``: serve until ``quit``."""
    path = socket_path()
    log_file = path.parent / "daemon.log"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    logging.basicConfig(
        filename=log_file,
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        anyio.run(Daemon(path, resolve=config.resolve).serve)
    except WaylayError as err:
        print(f"waylay daemon: {err.title}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
