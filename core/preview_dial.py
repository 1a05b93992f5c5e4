"""Reaching an ingress Service from the workstation: a port-forward per target.

``PortForwardDial`` resolves ``name.namespace:port`` (also with ``.svc`` or
``.svc.cluster.local``) to the Service's
``targetPort`` on a ready pod behind it (named ports looked up in the pod's
containers, as kube-proxy does), and keeps one ``core.forward.LocalForward``
per target on the loopback; each connection picks a ready pod afresh, so a
restarted ingress controller is followed. Run it in a task group
(``await tg.start(dial.run)``) and pass it as the preview server's ``dial``.
Any other host (a load balancer's DNS name) is dialed directly.
"""

from __future__ import annotations

import ssl
from typing import Any

import anyio
import anyio.abc

from core.forward import LocalForward
from core.kube import Kube
from core.preview_models import PreviewError, PreviewTarget

__all__ = ["PortForwardDial", "ingress_trust", "pick_pod", "service_target_port"]

Obj = dict[str, Any]


def ingress_trust(kube: Kube | None = None, ca_file: str | None = None) -> ssl.SSLContext:
    """What the preview trusts for TLS to the ingress: the system's CAs, plus the
    CA of the kubeconfig's cluster (the sandbox signs its ingress certificates
    with it), plus ``ca_file`` (``--preview-ca``) when given."""
    ctx = ssl.create_default_context()
    cluster_ca = (
        getattr(getattr(kube.api, "configuration", None), "ssl_ca_cert", None) if kube else None
    )
    for cafile in (cluster_ca, ca_file):
        if not cafile:
            continue
        try:
            ctx.load_verify_locations(cafile=str(cafile))
        except (OSError, ssl.SSLError) as exc:
            raise PreviewError(
                f"Cannot load the CA certificates in {cafile}",
                "Give a PEM file with the CA that signed the ingress's certificate.",
                detail=str(exc),
            )
    return ctx


def service_target_port(service: Obj, port: int) -> int | str:
    """The ``targetPort`` (number or name) behind Service port ``port``."""
    meta = service.get("metadata") or {}
    where = f"{meta.get('name')}.{meta.get('namespace')}"
    ports = (service.get("spec") or {}).get("ports") or []
    for item in ports:
        if item.get("port") == port:
            target = item.get("targetPort", port)
            return int(target) if isinstance(target, int) or str(target).isdigit() else str(target)
    known = ", ".join(str(p.get("port")) for p in ports) or "none"
    raise PreviewError(
        f"Service {where} has no port {port}",
        f"Its ports: {known}. Answer the ingress port prompt with one of them.",
    )


def _ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def pick_pod(pods: list[Obj], target_port: int | str) -> tuple[str, int] | None:
    """(pod name, container port) of the first ready pod that serves ``target_port``."""
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        if not _ready(pod):
            continue
        if isinstance(target_port, int):
            return pod["metadata"]["name"], target_port
        for container in (pod.get("spec") or {}).get("containers") or []:
            for port in container.get("ports") or []:
                if port.get("name") == target_port:
                    return pod["metadata"]["name"], int(port["containerPort"])
    return None


class PortForwardDial:
    """``dial`` for the workstation preview server, over port-forwards."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._forwards: dict[tuple[str, str, int], int] = {}
        self._lock = anyio.Lock()
        self._tg: anyio.abc.TaskGroup | None = None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None

    def _locate(self, name: str, namespace: str, port: int) -> tuple[str, int]:
        service = self.kube.get("v1", "Service", name, namespace)
        if service is None:
            raise PreviewError(
                f"No Service {name!r} in namespace {namespace!r}",
                "Answer the ingress prompt with the ingress controller's Service "
                "as name.namespace.",
            )
        target_port = service_target_port(service, port)
        selector = (service.get("spec") or {}).get("selector") or {}
        if not selector:
            raise PreviewError(
                f"Service {name}.{namespace} selects no pods",
                "waylay reaches the ingress through one of its pods; pick a Service "
                "with a selector.",
            )
        labels = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        pods, _ = self.kube.list("v1", "Pod", namespace, label_selector=labels)
        found = pick_pod(pods, target_port)
        if found is None:
            raise PreviewError(
                f"No ready pod of {name}.{namespace} serves port {target_port}",
                f"Wait for the ingress controller to be ready (`kubectl get pods -n {namespace}`).",
            )
        return found

    async def __call__(self, target: PreviewTarget) -> tuple[str, int]:
        if not target.is_service:
            return target.host, target.port  # an outside address: dial it directly
        name, namespace = target.service
        key = (name, namespace, target.port)
        async with self._lock:
            if key in self._forwards:
                return "127.0.0.1", self._forwards[key]
            if self._tg is None:
                raise PreviewError(
                    "The preview port-forwards are not running", "Start PortForwardDial.run first."
                )
            _, container_port = await anyio.to_thread.run_sync(
                self._locate, name, namespace, target.port, abandon_on_cancel=True
            )

            async def current_pod() -> tuple[str, str]:
                pod, _ = await anyio.to_thread.run_sync(
                    self._locate, name, namespace, target.port, abandon_on_cancel=True
                )
                return pod, namespace

            forward = LocalForward(self.kube, current_pod, container_port)
            local_port: int = await self._tg.start(forward.run)
            self._forwards[key] = local_port
            return "127.0.0.1", local_port
