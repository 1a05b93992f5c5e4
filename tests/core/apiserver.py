"""A real sandbox API server (HTTP, real auth and RBAC) for core's tests.

No controllers and no kubelet: tests create Deployments, ReplicaSets, Pods
and Services themselves, so what discovery sees is exactly what they made.
Users: ``admin`` (cluster-admin), ``developer`` (cluster-wide read), and
``limited`` (read in namespace ``demo`` only, via a RoleBinding).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from sandbox.apiserver import ApiServer
from sandbox.auth import Authenticator
from sandbox.bootstrap import bootstrap_objects
from sandbox.cluster import Cluster
from sandbox.rbac import Authorizer

USERS = ("admin", "developer", "limited")


@dataclass
class SandboxApi:
    url: str
    kubeconfig: Path
    cluster: Cluster
    tokens: dict[str, str]

    async def create(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.cluster.create(resource, obj)


def write_kubeconfig(path: Path, url: str, tokens: dict[str, str], current: str = "admin") -> Path:
    data = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": {"server": url}}],
        "users": [{"name": u, "user": {"token": t}} for u, t in tokens.items()],
        "contexts": [
            {"name": u, "context": {"cluster": "sandbox", "user": u, "namespace": "demo"}}
            for u in tokens
        ],
        "current-context": current,
    }
    path.write_text(yaml.safe_dump(data))
    return path


def _limited_rbac() -> list[tuple[str, dict[str, Any]]]:
    rbac = "rbac.authorization.k8s.io"
    return [
        (
            f"roles.{rbac}",
            {
                "apiVersion": f"{rbac}/v1",
                "kind": "Role",
                "metadata": {"name": "reader", "namespace": "demo"},
                "rules": [
                    {
                        "apiGroups": ["", "apps"],
                        "resources": ["*"],
                        "verbs": ["get", "list", "watch"],
                    }
                ],
            },
        ),
        (
            f"rolebindings.{rbac}",
            {
                "apiVersion": f"{rbac}/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "limited-reader", "namespace": "demo"},
                "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "reader"},
                "subjects": [{"apiGroup": rbac, "kind": "User", "name": "limited"}],
            },
        ),
    ]


@contextlib.asynccontextmanager
async def serve_api(tmp_path: Path) -> AsyncIterator[SandboxApi]:
    cluster = Cluster()
    for resource, obj in bootstrap_objects():
        await cluster.create(resource, obj)
    for ns in ("demo", "other"):
        await cluster.create(
            "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        )
    for resource, obj in _limited_rbac():
        await cluster.create(resource, obj)
    auth = Authenticator()
    auth.tokens["limited"] = "limited-token-0123456789"
    server = ApiServer(
        cluster, authenticator=auth, authorizer=Authorizer(cluster.store), bookmark_interval=1.0
    )
    runner = web.AppRunner(server.app(), shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}"
    tokens = {u: auth.tokens[u] for u in USERS}
    try:
        yield SandboxApi(
            url, write_kubeconfig(tmp_path / "kubeconfig", url, tokens), cluster, tokens
        )
    finally:
        await runner.cleanup()
        cluster.close()
