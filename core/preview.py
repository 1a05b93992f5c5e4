"""Preview URLs: the public surface, and the Ingress that install makes for them.

A preview URL sends requests through the cluster's ingress with an
intercept's header added, so a teammate, a reviewer or a browser exercises
the whole request path and still reaches the developer's machine.

- ``preview_defaults``: what to offer at the four prompts: remembered answers
  (``PreviewMemory``, per workload) or else detection (``detect_defaults``).
- ``intercept_headers``: the headers a preview adds for an intercept.
- ``run_workstation_previews``: the workstation server (``PreviewServer`` over
  ``PortForwardDial``, TLS trust from ``ingress_trust``, URLs dying with their
  intercepts by ``end_with_intercepts``), used when the manager has no
  preview domain.
- The manager's router (``webhook.preview``) serves ``<token>.D`` when install
  was given ``--preview-domain D``; ``preview_ingress_manifest`` is the
  Ingress install creates for ``*.D``. Ask for one with
  ``create_cluster_preview(session.request, ...)``: None means the manager
  has no preview domain, so serve it from the workstation.
"""

from __future__ import annotations

from typing import Any

from core.kube import Kube
from core.preview_cluster import (
    create_cluster_preview,
    list_cluster_previews,
    revoke_cluster_preview,
)
from core.preview_detect import detect_defaults, ingress_candidates, propose_defaults
from core.preview_dial import PortForwardDial, ingress_trust
from core.preview_follow import end_with_intercepts
from core.preview_memory import PreviewMemory, workload_key
from core.preview_models import (
    PreviewDefaults,
    PreviewEntry,
    PreviewError,
    PreviewTarget,
    new_token,
)
from core.preview_server import PreviewServer
from core.preview_table import PreviewTable, intercept_headers
from core.preview_workstation import run_workstation_previews

__all__ = [
    "PREVIEW_INGRESS",
    "PREVIEW_PORT",
    "PortForwardDial",
    "PreviewDefaults",
    "PreviewEntry",
    "PreviewError",
    "PreviewMemory",
    "PreviewServer",
    "PreviewTable",
    "PreviewTarget",
    "create_cluster_preview",
    "detect_defaults",
    "end_with_intercepts",
    "ingress_candidates",
    "ingress_trust",
    "intercept_headers",
    "list_cluster_previews",
    "new_token",
    "preview_defaults",
    "preview_ingress_manifest",
    "preview_service_port",
    "propose_defaults",
    "revoke_cluster_preview",
    "run_workstation_previews",
    "workload_key",
]


async def preview_defaults(
    kube: Kube,
    namespace: str,
    service: str,
    *,
    workload_kind: str,
    workload: str,
    memory: PreviewMemory | None = None,
) -> PreviewDefaults | None:
    """What to offer at the four prompts: the user's answers last time for this
    workload, else what ``detect_defaults`` finds. Save the answers given with
    ``PreviewMemory().remember(workload_key(...), target)``."""
    memory = memory or PreviewMemory()
    key = workload_key(kube.context.name, namespace, workload_kind, workload)
    remembered = memory.recall(key)
    if remembered is not None:
        return remembered
    return await detect_defaults(kube, namespace, service)


PREVIEW_PORT = 8083
"""The manager's preview router port (container and Service port)."""

PREVIEW_INGRESS = "waylay-preview"


# ---- for core/install.py: what ``waylay install --preview-domain D`` creates ----


def preview_service_port(port: int = PREVIEW_PORT) -> dict[str, Any]:
    """The port to add to the manager's Service (and container) for the router."""
    return {"name": "preview", "port": port, "targetPort": port, "protocol": "TCP"}


def preview_ingress_manifest(
    domain: str,
    *,
    namespace: str = "waylay",
    service: str = "waylay-manager",
    port: int = PREVIEW_PORT,
    tls_secret: str | None = None,
    ingress_class: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The Ingress routing ``*.<domain>`` to the manager's preview router.

    ``tls_secret`` names a ``kubernetes.io/tls`` Secret (in ``namespace``) with
    a wildcard certificate for ``*.<domain>``; without it the ingress serves
    the preview URLs over plain HTTP.
    """
    domain = domain.strip(".").lower()
    if not domain or "." not in domain or "*" in domain:
        raise PreviewError(
            f"{domain!r} is not a usable preview domain",
            "Give a DNS domain whose wildcard points at the ingress, e.g. "
            "--preview-domain preview.example.com.",
        )
    host = f"*.{domain}"
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": service, "port": {"number": port}}},
                        }
                    ]
                },
            }
        ]
    }
    if tls_secret:
        spec["tls"] = [{"hosts": [host], "secretName": tls_secret}]
    if ingress_class:
        spec["ingressClassName"] = ingress_class
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": PREVIEW_INGRESS,
            "namespace": namespace,
            "labels": dict(labels or {}),
            "annotations": {"waylay.dev/preview-domain": domain},
        },
        "spec": spec,
    }
