"""The in-cluster preview router: ``<token>.<preview domain>`` -> the ingress.

Runs in the manager when install was given ``--preview-domain D`` (install
then routes ``*.D`` to the manager's preview port with an Ingress, see
``core.preview.preview_ingress_manifest``). Each request whose Host is
``<token>.D`` is forwarded by ``core.preview_proxy`` to the preview's ingress
target (the ingress Service's ClusterIP, TLS with SNI and Host set to the L5
hostname), with the intercept's header(s) and the user's extra headers.
``webhook.server.run_manager`` serves it (``WAYLAY_PREVIEW_DOMAIN``, port
``WAYLAY_PREVIEW_PORT``) and ``webhook.client_api.ClientApi`` dispatches the
client operations below to it.

The token table lives here, keyed by intercept id: the router subscribes to
the registry, so a token is dead (404) the moment its intercept is removed,
revoked or its session expires. Client operations (``Request.op`` of the
client API): ``preview-create`` ``{name, target, headers}``,
``preview-revoke`` ``{token}`` (the owner's session or an admin),
``preview-list`` ``{}`` (tokens shown to their owner and admins only); see
:meth:`PreviewRouter.handle_op`.
"""

from __future__ import annotations

import ssl
from typing import Any

import anyio
from aiohttp import web
from anyio.abc import TaskStatus
from pydantic import BaseModel, Field, ValidationError

from core.preview_dial import ingress_trust
from core.preview_models import TOKEN_RE, PreviewEntry, PreviewError, PreviewTarget
from core.preview_proxy import Dial, PreviewForwarder, dead_page
from core.preview_table import PreviewTable, intercept_headers
from core.protocol import InterceptInfo, Problem
from webhook.http import serve
from webhook.kube import AsyncKube
from webhook.registry import Change, Registry, RegistryError, Session

__all__ = [
    "PREVIEW_OPS",
    "PreviewRouter",
    "ServiceDial",
    "direct_dial",
    "make_router",
    "serve_router",
]

PREVIEW_OPS = ("preview-create", "preview-revoke", "preview-list")


class _CreateParams(BaseModel):
    name: str
    """The intercept's name in the calling session."""
    target: PreviewTarget
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra headers to add to every request."""


class _RevokeParams(BaseModel):
    token: str


def _problem(code: str, title: str, message: str, hint: str = "") -> RegistryError:
    return RegistryError(Problem(code=code, title=title, message=message, hint=hint))


class ServiceDial:
    """``dial`` in the cluster: a ``name.namespace`` host goes to the Service's ClusterIP."""

    def __init__(self, kube: AsyncKube) -> None:
        self.kube = kube

    async def __call__(self, target: PreviewTarget) -> tuple[str, int]:
        name, namespace = target.service
        if target.is_service:
            service = await self.kube.get("v1", "Service", name, namespace)
            ip = ((service or {}).get("spec") or {}).get("clusterIP")
            if ip and ip != "None":
                return str(ip), target.port
        return target.host, target.port


class PreviewRouter:
    """Token table, client operations and the HTTP handler of the preview router."""

    def __init__(
        self,
        registry: Registry,
        domain: str,
        dial: Dial,
        *,
        ssl_context: ssl.SSLContext | None = None,
        scheme: str = "https",
    ) -> None:
        self.registry = registry
        self.domain = domain.strip(".").lower()
        self.forwarder = PreviewForwarder(dial, ssl_context)
        self.table = PreviewTable(
            lambda token: f"{scheme}://{token}.{self.domain}/", on_dead=self.forwarder.cut
        )
        self.unsubscribe = registry.subscribe(self._on_change)

    def _on_change(self, change: Change) -> None:
        if change.kind == "intercept" and change.data.get("state") == "removed":
            self.table.end_intercept(str(change.data.get("id", "")))

    def _intercept(self, intercept_id: str) -> InterceptInfo | None:
        for info in self.registry.intercepts():
            if info.id == intercept_id:
                return info
        return None

    # ------------------------------------------------------------ operations

    def create(
        self, session_id: str, name: str, target: PreviewTarget, extra: dict[str, str]
    ) -> PreviewEntry:
        intercept_id = f"{session_id}:{name}"
        info = self._intercept(intercept_id)
        if info is None:
            raise _problem(
                "not-found",
                "No such intercept",
                f"this session has no intercept named {name!r}",
                "create the intercept first, then its preview URL",
            )
        try:
            return self.table.add(intercept_id, target, intercept_headers(info.spec, extra))
        except PreviewError as exc:
            raise _problem("bad-request", exc.title, exc.detail or exc.title, exc.hint)

    def revoke(self, session: Session, token: str) -> PreviewEntry:
        entry = self.table.get(token)
        if entry is None:
            raise _problem("not-found", "No such preview URL", "that preview URL is not live")
        if not entry.intercept_id.startswith(session.id + ":") and not session.admin:
            raise _problem(
                "forbidden",
                "Not your preview URL",
                f"{session.identity} may not revoke a preview URL of another session",
                "ask its owner, or use an admin key",
            )
        self.table.revoke(token)
        return entry

    def listing(self, session: Session) -> list[dict[str, Any]]:
        """Every live URL with its intercept; header values never, and the token
        (a capability) only to its owner's session and to admins."""
        items = []
        for entry in self.table.entries():
            item = entry.model_dump(mode="json", exclude={"headers"})
            item["header_names"] = list(entry.headers)
            if not (session.admin or entry.intercept_id.startswith(session.id + ":")):
                item["token"] = item["url"] = ""
            items.append(item)
        return items

    async def handle_op(self, session: Session, op: str, params: dict[str, Any]) -> Any:
        """Run one client operation (``PREVIEW_OPS``); errors are RegistryErrors."""
        try:
            if op == "preview-create":
                p = _CreateParams.model_validate(params)
                entry = self.create(session.id, p.name, p.target, p.headers)
                return entry.model_dump(mode="json")
            if op == "preview-revoke":
                token = _RevokeParams.model_validate(params).token
                return self.revoke(session, token).model_dump(mode="json")
            if op == "preview-list":
                return self.listing(session)
        except ValidationError as exc:
            raise _problem("bad-request", "Bad preview request", str(exc))
        raise _problem("bad-request", "Unknown operation", f"unknown op {op!r}")

    # --------------------------------------------------------------- serving

    def token_of(self, host: str) -> str | None:
        name = host.split(":", 1)[0].lower().rstrip(".")
        label, _, rest = name.partition(".")
        if rest == self.domain and TOKEN_RE.fullmatch(label):
            return label
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        token = self.token_of(request.host)
        entry = self.table.get(token) if token else None
        if entry is None or self._intercept(entry.intercept_id) is None:
            return dead_page(request)
        return await self.forwarder.forward(request, entry, request.raw_path)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def close(self) -> None:
        self.unsubscribe()
        await self.forwarder.close()


async def direct_dial(target: PreviewTarget) -> tuple[str, int]:
    """``dial`` without cluster access: the target's host and port as given."""
    return target.host, target.port


def make_router(
    registry: Registry,
    domain: str,
    kube: AsyncKube | None,
    *,
    ca_file: str | None = None,
    scheme: str = "https",
) -> PreviewRouter:
    """The router as the manager runs it: ingress Services dialed at their ClusterIP,
    TLS trusting the system CAs, the cluster's CA and ``ca_file``; URLs shown as
    ``<scheme>://<token>.<domain>/``. Without ``kube`` hosts are dialed as given."""
    trust = ingress_trust(kube.kube if kube else None, ca_file)
    dial: Dial = ServiceDial(kube) if kube is not None else direct_dial
    return PreviewRouter(registry, domain, dial, ssl_context=trust, scheme=scheme)


async def serve_router(
    router: PreviewRouter,
    host: str,
    port: int,
    *,
    task_status: TaskStatus[tuple[str, int]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the router (plain HTTP: the cluster's ingress terminates TLS for ``*.D``)."""
    try:
        async with anyio.create_task_group() as tg:
            bound = await tg.start(serve, router.app(), host, port)
            task_status.started(bound)
    finally:
        with anyio.CancelScope(shield=True):
            await router.close()
