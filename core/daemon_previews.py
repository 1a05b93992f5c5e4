"""Preview URLs for intercepts made through the daemon (``--preview-url``).

The four answers (ingress host, port, TLS, L5 hostname) come from the flags;
those not given are filled from ``core.preview.preview_defaults`` (what the
user answered last time for the workload, else detection). The manager's
preview router serves the URL when it has a preview domain; otherwise this
daemon serves it from the workstation (one ``PreviewServer`` per context,
started on first use), and the URL dies with its intercept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import anyio.abc

from core.kube import Kube
from core.preview import (
    PortForwardDial,
    PreviewMemory,
    PreviewServer,
    PreviewTarget,
    create_cluster_preview,
    ingress_trust,
    preview_defaults,
    workload_key,
)
from core.preview_models import PreviewError
from core.preview_table import intercept_headers
from core.protocol import InterceptInfo
from core.session import Session

__all__ = ["PreviewAnswers", "Previews"]


@dataclass(frozen=True)
class PreviewAnswers:
    """The flags ``--ingress-host/-port/-tls/-l5`` (None: take the default)."""

    host: str | None = None
    port: int | None = None
    tls: bool | None = None
    l5: str | None = None


@dataclass
class Previews:
    """Creates preview URLs for one context; serves workstation ones when needed."""

    kube: Kube
    tg: anyio.abc.TaskGroup
    memory: PreviewMemory = field(default_factory=PreviewMemory)
    _server: PreviewServer | None = None
    _lock: anyio.Lock = field(default_factory=anyio.Lock)

    async def target(self, info: InterceptInfo, answers: PreviewAnswers) -> PreviewTarget:
        spec = info.spec
        defaults = await preview_defaults(
            self.kube,
            spec.namespace,
            spec.service,
            workload_kind=spec.workload_kind,
            workload=spec.workload,
            memory=self.memory,
        )
        host = answers.host or (defaults.host if defaults else None)
        port = answers.port or (defaults.port if defaults else None)
        if not host or not port:
            raise PreviewError(
                f"No ingress found in front of Service {spec.service!r}",
                "Name it: --ingress-host NAME.NAMESPACE --ingress-port PORT "
                "(and --ingress-tls / --ingress-l5 HOST when it needs them).",
            )
        target = PreviewTarget(
            host=host,
            port=port,
            tls=answers.tls if answers.tls is not None else bool(defaults and defaults.tls),
            hostname=answers.l5 or (defaults.hostname if defaults else ""),
        )
        key = workload_key(
            self.kube.context.name, spec.namespace, spec.workload_kind, spec.workload
        )
        self.memory.remember(key, target)
        return target

    async def create(self, session: Session, info: InterceptInfo, answers: PreviewAnswers) -> str:
        """The URL: from the manager's router, else served here."""
        target = await self.target(info, answers)
        headers = intercept_headers(info.spec)
        entry = await create_cluster_preview(session.request, info.spec.name, target, headers)
        if entry is None:
            server = await self._workstation()
            entry = server.create(info.id, target, headers)
        return str(entry.url)

    def end(self, intercept_id: str) -> None:
        if self._server is not None:
            self._server.end_intercept(intercept_id)

    def url_of(self, intercept_id: str) -> str | None:
        if self._server is None:
            return None
        entries = self._server.entries(intercept_id)
        return str(entries[0].url) if entries else None

    async def _workstation(self) -> PreviewServer:
        async with self._lock:
            if self._server is None:
                dial = PortForwardDial(self.kube)
                await self.tg.start(dial.run)
                trust = await anyio.to_thread.run_sync(ingress_trust, self.kube)
                server = PreviewServer(dial, ssl_context=trust)
                await self.tg.start(server.run)
                self._server = server
            return self._server
