"""Preview URLs: the public surface, and the Ingress that install makes for them.

A preview URL sends requests through the cluster's ingress with an
intercept's header added, so a teammate, a reviewer or a browser exercises
the whole request path and still reaches the developer's machine.

- ``detect_defaults`` / ``propose_defaults``: defaults for the four prompts
  (``core.preview_detect``); ``PreviewMemory`` remembers the answers per
  workload (``core.preview_memory``).
- ``PreviewServer`` + ``PortForwardDial``: the workstation server, used when
  the manager has no preview domain (``core.preview_server``).
- The manager's router (``webhook.preview``) serves ``<token>.D`` when install
  was given ``--preview-domain D``; ``preview_ingress_manifest`` is the
  Ingress install creates for ``*.D``.
"""

from __future__ import annotations

from typing import Any

from core.preview_detect import detect_defaults, ingress_candidates, propose_defaults
from core.preview_dial import PortForwardDial
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
    "detect_defaults",
    "ingress_candidates",
    "intercept_headers",
    "new_token",
    "preview_ingress_manifest",
    "preview_service_port",
    "propose_defaults",
    "workload_key",
]

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
