"""The kubeconfig a pod's processes use to reach the API as its service account.

Real pods find a token under ``/var/run/secrets/kubernetes.io/serviceaccount``;
sandbox pods share the host's filesystem, so the kubelet writes a kubeconfig
per pod (server, the sandbox's CA, a token for the pod's ServiceAccount) and
points ``$KUBECONFIG`` at it. Code that tries in-cluster config first and
falls back to ``$KUBECONFIG`` (as ``kubernetes.config`` users do) then talks to
the API with the service account's RBAC-checked identity.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

__all__ = ["ApiAccess", "write_kubeconfig"]


@dataclass(frozen=True)
class ApiAccess:
    """How in-pod code reaches the API server."""

    url: str
    """``https://127.0.0.1:PORT``"""
    ca_pem: bytes
    issue_token: Callable[[str, str], str]
    """``issue_token(namespace, account)``: ``Authenticator.issue_service_account_token``."""

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)


def write_kubeconfig(path: Path, api: ApiAccess, namespace: str, account: str) -> Path:
    token = api.issue_token(namespace, account)
    name = f"{namespace}-{account}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "sandbox",
                "cluster": {
                    "server": api.url,
                    "certificate-authority-data": base64.b64encode(api.ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [
            {
                "name": name,
                "context": {"cluster": "sandbox", "user": name, "namespace": namespace},
            }
        ],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
