"""The sandbox server process: API server, controllers and kubelet on one event loop.

``Sandbox(directory).start()`` brings up, in order: the CA and serving
certificate (kept in the directory, so a restart keeps the kubeconfig valid),
the tokens, the cluster with its bootstrap objects, mutating admission, the
garbage collector, the controllers of :mod:`sandbox.controllers`, the kubelet,
and the HTTPS API server; then it writes ``DIR/kubeconfig`` with the contexts
``sandbox-admin`` (current) and ``sandbox-developer``. ``stop()`` undoes all of
it and leaves no process behind.

Files in the directory: ``ca.crt``/``ca.key``, ``server.crt``/``server.key``,
``auth.json`` (tokens, mode 0600), ``kubeconfig``, ``kubelet/`` (pod state),
``state.json`` (every object, so ``stop`` and ``start`` keep them; see
:mod:`sandbox.persist`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from core.certs import CA, make_ca
from sandbox import gc
from sandbox.admission import MutatingAdmission
from sandbox.apiserver import ApiServer
from sandbox.auth import Authenticator
from sandbox.bootstrap import bootstrap_objects
from sandbox.cluster import Cluster
from sandbox.errors import ApiError
from sandbox.ipam import Ipam
from sandbox.kubelet import Kubelet, KubeletConfig
from sandbox.kubelet_kubeconfig import ApiAccess
from sandbox.persist import Snapshotter, load_store
from sandbox.rbac import Authorizer
from sandbox.tasks import cancel_and_wait

__all__ = ["ADMIN_CONTEXT", "DEVELOPER_CONTEXT", "Sandbox"]

log = logging.getLogger(__name__)

ADMIN_CONTEXT = "sandbox-admin"
DEVELOPER_CONTEXT = "sandbox-developer"
_CLUSTER_NAME = "sandbox"
_STATE = "state.json"

Runner = Callable[[Cluster], Awaitable[None]]


def _controllers() -> list[tuple[str, Runner]]:
    """``(name, run)`` for every controller :mod:`sandbox.controllers` lists."""
    try:
        package = importlib.import_module("sandbox.controllers")
    except ImportError:
        return []
    found: list[tuple[str, Runner]] = []
    for item in getattr(package, "CONTROLLERS", []):
        run = item if callable(item) else getattr(item, "run", None)
        if run is not None:
            name = getattr(item, "__name__", repr(item))
            found.append((name, run))
    return found


def _load_ca(directory: Path) -> CA:
    cert, key = directory / "ca.crt", directory / "ca.key"
    if cert.exists() and key.exists():
        return CA.from_pem(cert.read_bytes(), key.read_bytes())
    ca = make_ca("waylay-sandbox-ca")
    cert.write_bytes(ca.cert_pem)
    key.write_bytes(ca.key_pem)
    key.chmod(0o600)
    return ca


class Sandbox:
    """One sandbox cluster, served over HTTPS on ``host:port`` (0 picks a free port)."""

    def __init__(
        self,
        directory: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        controllers: bool = True,
        kubelet: bool = True,
        bookmark_interval: float = 60.0,
        persist: bool = True,
    ) -> None:
        self.directory = directory.resolve()
        self.host = host
        self.port = port
        self.run_controllers = controllers
        self.run_kubelet = kubelet
        self.bookmark_interval = bookmark_interval
        self.persist = persist
        self.restored = False
        """Whether the objects came from ``DIR/state.json`` (a restart)."""
        self._snapshotter: asyncio.Task[None] | None = None
        self.cluster: Cluster | None = None
        self.authenticator: Authenticator | None = None
        self.kubelet: Kubelet | None = None
        self.ca: CA | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        ca = self.ca = _load_ca(self.directory)
        cert_pem, key_pem = ca.issue_server_cert([self.host, "localhost", "127.0.0.1"])
        (self.directory / "server.crt").write_bytes(cert_pem + ca.cert_pem)
        (self.directory / "server.key").write_bytes(key_pem)
        (self.directory / "server.key").chmod(0o600)

        store = load_store(self.directory / _STATE) if self.persist else None
        self.restored = store is not None
        cluster = self.cluster = Cluster(store, ipam=self._claim_addresses())
        auth_file = self.directory / "auth.json"
        exists = self._service_account_exists
        if auth_file.exists():
            self.authenticator = Authenticator.load(auth_file, service_account_exists=exists)
        else:
            self.authenticator = Authenticator(service_account_exists=exists)
            self.authenticator.save(auth_file)
        for resource, obj in bootstrap_objects():
            try:
                await cluster.create(resource, obj)
            except ApiError as exc:
                if exc.code != 409:  # restored from state.json
                    raise
        if self.persist:
            snapshots = Snapshotter(cluster, self.directory / _STATE)
            self._snapshotter = asyncio.create_task(snapshots.run(), name="snapshots")
        cluster.admission = MutatingAdmission(cluster.store)
        self._spawn("garbage-collector", gc.run(cluster))
        if self.run_controllers:
            for name, run in _controllers():
                self._spawn(name, run(cluster))

        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_ctx.load_cert_chain(self.directory / "server.crt", self.directory / "server.key")
        api = ApiServer(
            cluster,
            authenticator=self.authenticator,
            authorizer=Authorizer(cluster.store),
            bookmark_interval=self.bookmark_interval,
        )
        self._runner = web.AppRunner(api.app(), handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=ssl_ctx)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            sockets = getattr(server, "sockets", None) or []
            self.port = int(sockets[0].getsockname()[1])

        if self.run_kubelet:
            access = ApiAccess(
                url=self.url,
                ca_pem=ca.cert_pem,
                issue_token=self.authenticator.issue_service_account_token,
            )
            self.kubelet = Kubelet(
                cluster,
                cluster.ipam,
                KubeletConfig(state_dir=self.directory / "kubelet", api=access),
            )
            api.kubelet = self.kubelet
            await self.kubelet.start()
        self.write_kubeconfig()
        log.info("sandbox API server listening on %s", self.url)

    def _claim_addresses(self) -> Ipam:
        """Claim a loopback block: the one used before (``DIR/ipam-block``) when it is free,
        so restored Service and pod addresses stay valid."""
        remembered = self.directory / "ipam-block"
        try:
            preferred: int | None = int(remembered.read_text().strip())
        except (OSError, ValueError):
            preferred = None
        ipam = Ipam.claim(preferred)
        if preferred is not None and ipam.block != preferred:
            log.warning(
                "address block 127.%s.0.0/16 is taken by another sandbox; using 127.%s.0.0/16 "
                "(restored ClusterIPs may not answer: recreate their Services)",
                preferred,
                ipam.block,
            )
        remembered.write_text(f"{ipam.block}\n")
        return ipam

    def _service_account_exists(self, namespace: str, name: str) -> bool:
        return (
            self.cluster is not None
            and self.cluster.store.get("serviceaccounts", namespace, name) is not None
        )

    def _spawn(self, name: str, coro: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sandbox component %s crashed", name)

        self._tasks.append(asyncio.create_task(guarded(), name=name))

    async def stop(self) -> None:
        if self._snapshotter is not None:  # save before the kubelet marks pods stopped
            self._snapshotter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._snapshotter
            self._snapshotter = None
        if self.kubelet is not None:
            await self.kubelet.stop()
            self.kubelet = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        if self.cluster is not None:
            self.cluster.ipam.close()

    def write_kubeconfig(self) -> Path:
        """``DIR/kubeconfig``: contexts ``sandbox-admin`` (current) and ``sandbox-developer``."""
        assert self.ca is not None and self.authenticator is not None
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": _CLUSTER_NAME,
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(self.ca.cert_pem).decode(),
                    },
                }
            ],
            "users": [
                {"name": user, "user": {"token": self.authenticator.token_for(user)}}
                for user in ("admin", "developer")
            ],
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": _CLUSTER_NAME, "user": user, "namespace": "default"},
                }
                for context, user in ((ADMIN_CONTEXT, "admin"), (DEVELOPER_CONTEXT, "developer"))
            ],
            "current-context": ADMIN_CONTEXT,
            "preferences": {},
        }
        tmp = self.kubeconfig.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        tmp.chmod(0o600)
        tmp.replace(self.kubeconfig)
        return self.kubeconfig

    async def install_demo(self) -> None:
        """Objects for a first look: namespace ``demo`` with an HTTP echo Deployment and Service."""
        assert self.cluster is not None
        try:
            module = importlib.import_module("sandbox.demo")
        except ImportError:
            module = None
        install = getattr(module, "install", None)
        if install is not None:
            await install(self.cluster, ca=self.ca)
            return
        for resource, obj in _demo_objects():
            try:
                await self.cluster.create(resource, obj)
            except ApiError as exc:
                if exc.code != 409:
                    raise


def _demo_objects() -> list[tuple[str, dict[str, Any]]]:
    labels = {"app": "hello"}
    return [
        ("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}),
        (
            "deployments.apps",
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "hello", "namespace": "demo", "labels": labels},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "containers": [
                                {
                                    "name": "hello",
                                    "image": "waylay/demo-http-echo:1.0",
                                    "env": [{"name": "APP", "value": "hello"}],
                                    "ports": [{"name": "http", "containerPort": 8080}],
                                }
                            ]
                        },
                    },
                },
            },
        ),
        (
            "services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "hello", "namespace": "demo", "labels": labels},
                "spec": {
                    "selector": labels,
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                },
            },
        ),
    ]
