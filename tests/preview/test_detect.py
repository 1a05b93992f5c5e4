"""Ingress detection and remembered answers.

Covers:
- the defaults for the demo cluster, read from a real sandbox API server over
  HTTP (the demo's own objects): ``orders`` and ``ledger`` get HTTPS 443 and
  ``shop.waylay.local`` (the shop Ingress has TLS for it), ``hello`` gets
  HTTP 80 and ``hello.waylay.local``, a Service no Ingress routes to gets the
  controller's HTTPS port and the ingress host as hostname;
- candidates: LoadBalancer Services first, then well-known controller names,
  Services without web ports ignored; ports found by name, then by number;
- rules: exact hosts before rules without one, wildcards skipped, the default
  backend counts, other namespaces do not; no controller -> no defaults;
- remembered answers win over detection; per workload, file mode 0600, malformed file = empty;
- a preview target naming an outside host is dialed directly, a Service one
  only through the running port-forwards;
- the preview Ingress for ``--preview-domain`` is accepted by the API server and
  routes ``<token>.D`` to the manager's preview port (per the demo ingress's
  routing rules).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from core.certs import make_ca
from core.kube import Kube
from core.preview import (
    PREVIEW_PORT,
    PortForwardDial,
    PreviewError,
    PreviewMemory,
    PreviewTarget,
    detect_defaults,
    ingress_candidates,
    new_token,
    preview_defaults,
    preview_ingress_manifest,
    propose_defaults,
    workload_key,
)
from core.preview_detect import routes_to_service
from sandbox.demo import demo_objects
from sandbox.images.ingress_routes import route
from tests.core.apiserver import SandboxApi

Obj = dict[str, Any]


def svc(name: str, namespace: str, *ports: tuple[str, int], type_: str = "ClusterIP") -> Obj:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": type_,
            "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports],
        },
    }


def ing(name: str, namespace: str, spec: Obj) -> Obj:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


def rule(host: str, service: str) -> Obj:
    backend = {"service": {"name": service, "port": {"number": 80}}}
    return {"host": host, "http": {"paths": [{"path": "/", "backend": backend}]}}


# ------------------------------------------------------------ against the API


@pytest.fixture
async def demo_kube(api: SandboxApi) -> Kube:
    for resource, obj in demo_objects(make_ca("test-ca")):
        await api.create(resource, obj)
    return Kube.from_kubeconfig(str(api.kubeconfig), "developer")


@pytest.mark.parametrize(
    ("namespace", "service", "expected"),
    [
        ("shop", "orders", ("ingress.ingress", 443, True, "shop.waylay.local")),
        ("shop", "ledger", ("ingress.ingress", 443, True, "shop.waylay.local")),
        ("shop", "catalog-stable", ("ingress.ingress", 443, True, "shop.waylay.local")),
        ("default", "hello", ("ingress.ingress", 80, False, "hello.waylay.local")),
        ("shop", "catalog-canary", ("ingress.ingress", 443, True, "ingress.ingress")),
    ],
)
async def test_demo_defaults(
    demo_kube: Kube, namespace: str, service: str, expected: tuple[str, int, bool, str]
) -> None:
    found = await detect_defaults(demo_kube, namespace, service)
    assert found is not None
    assert (found.host, found.port, found.tls, found.hostname) == expected
    assert "ingress.ingress" in found.source


async def test_no_ingress_controller_no_defaults(api: SandboxApi) -> None:
    kube = Kube.from_kubeconfig(str(api.kubeconfig), "developer")
    assert await detect_defaults(kube, "demo", "anything") is None


async def test_preview_ingress_accepted_and_routes(api: SandboxApi) -> None:
    kube = Kube.from_kubeconfig(str(api.kubeconfig), "admin")
    await api.create(
        "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "waylay"}}
    )
    manifest = preview_ingress_manifest("preview.example.com", tls_secret="wild-tls")
    created = await anyio.to_thread.run_sync(
        kube.create, "networking.k8s.io/v1", "Ingress", manifest, "waylay"
    )
    assert created["spec"]["rules"][0]["host"] == "*.preview.example.com"
    token = new_token()
    backend = route([created], f"{token}.preview.example.com", "/any/path")
    assert backend is not None
    assert (backend.namespace, backend.service, backend.port) == (
        "waylay",
        "waylay-manager",
        PREVIEW_PORT,
    )
    assert route([created], f"a.{token}.preview.example.com", "/") is None
    with pytest.raises(PreviewError):
        preview_ingress_manifest("localhost")


# --------------------------------------------------------------- pure parts


def test_candidates_ranked() -> None:
    services = [
        svc("db", "data", ("postgres", 5432), type_="LoadBalancer"),
        svc("traefik", "kube-system", ("web", 80), ("websecure", 443)),
        svc("ingress-nginx-controller", "ingress-nginx", ("http", 80), ("https", 443)),
        svc("public-gw", "edge", ("http", 8080), type_="LoadBalancer"),
        svc("my-ingress-thing", "x", ("http", 80)),
        svc("orders", "shop", ("http", 80)),
    ]
    found = ingress_candidates(services)
    assert [c.host for c in found] == [
        "public-gw.edge",
        "ingress-nginx-controller.ingress-nginx",
        "traefik.kube-system",
        "my-ingress-thing.x",
    ]
    assert (found[0].http_port, found[0].https_port) == (8080, None)
    assert (found[2].http_port, found[2].https_port) == (80, 443)


def test_rules_to_service() -> None:
    ingresses = [
        ing("a", "shop", {"rules": [rule("", "orders"), rule("*.shop.test", "orders")]}),
        ing(
            "b",
            "shop",
            {
                "rules": [rule("api.shop.test", "orders"), rule("web.shop.test", "web")],
                "tls": [{"hosts": ["api.shop.test"]}],
            },
        ),
        ing("c", "other", {"rules": [rule("elsewhere.test", "orders")]}),
        ing("d", "shop", {"defaultBackend": {"service": {"name": "fallback"}}}),
    ]
    routes = routes_to_service(ingresses, "shop", "orders")
    assert [(r.ingress, r.hostname, r.tls) for r in routes] == [
        ("b", "api.shop.test", True),
        ("a", "", False),
    ]
    assert [r.hostname for r in routes_to_service(ingresses, "shop", "fallback")] == [""]


def test_http_only_controller_and_rule_without_host() -> None:
    services = [svc("traefik", "edge", ("web", 80))]
    ingresses = [ing("a", "shop", {"rules": [rule("", "orders")]})]
    found = propose_defaults(services, ingresses, "shop", "orders")
    assert found is not None
    assert (found.host, found.port, found.tls, found.hostname) == (
        "traefik.edge",
        80,
        False,
        "traefik.edge",
    )
    https_only = [svc("gw", "edge", ("https", 443), type_="LoadBalancer")]
    found = propose_defaults(https_only, [], "shop", "orders")
    assert found is not None and (found.port, found.tls) == (443, True)
    assert propose_defaults([svc("orders", "shop", ("http", 80))], [], "shop", "orders") is None


# ------------------------------------------------------------------ memory


def test_memory_roundtrip(tmp_path: Path) -> None:
    memory = PreviewMemory(tmp_path / "cfg" / "waylay" / "previews.json")
    key = workload_key("sandbox", "shop", "Deployment", "orders")
    assert memory.recall(key) is None
    memory.remember(
        key, PreviewTarget(host="ingress.ingress", port=443, tls=True, hostname="a.test")
    )
    memory.remember(
        workload_key("sandbox", "default", "Deployment", "hello"),
        PreviewTarget(host="ingress.ingress", port=80),
    )
    assert os.stat(memory.path).st_mode & 0o777 == 0o600
    again = PreviewMemory(memory.path).recall(key)
    assert again is not None
    assert (again.host, again.port, again.tls, again.hostname) == (
        "ingress.ingress",
        443,
        True,
        "a.test",
    )
    hello = memory.recall(workload_key("sandbox", "default", "Deployment", "hello"))
    assert hello is not None and hello.hostname == "ingress.ingress"
    assert memory.forget(key) and not memory.forget(key)
    assert memory.recall(key) is None


def test_memory_default_path_and_bad_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    memory = PreviewMemory()
    assert memory.path == tmp_path / "waylay" / "previews.json"
    memory.path.parent.mkdir(parents=True)
    memory.path.write_text("{not json")
    assert memory.recall("k") is None
    memory.remember("k", PreviewTarget(host="gw.edge", port=80))
    assert memory.recall("k") is not None


async def test_portforward_dial_outside_host_is_direct(api: SandboxApi) -> None:
    dial = PortForwardDial(Kube.from_kubeconfig(str(api.kubeconfig), "developer"))
    assert await dial(PreviewTarget(host="lb.example.com", port=443)) == ("lb.example.com", 443)
    with pytest.raises(PreviewError, match="not running"):
        await dial(PreviewTarget(host="gw.demo", port=80))


def test_target_validation() -> None:
    with pytest.raises(ValueError, match="not a host name"):
        PreviewTarget(host="bad host", port=80)
    with pytest.raises(ValueError):
        PreviewTarget(host="gw.edge", port=0)
    assert PreviewTarget(host="gw.edge", port=80).service == ("gw", "edge")
    assert PreviewTarget(host="gw", port=80).service == ("gw", "default")
    assert PreviewTarget(host="gw.edge.svc.cluster.local", port=80).is_service
    assert not PreviewTarget(host="gw.example.com", port=80).is_service


async def test_remembered_answers_win(demo_kube: Kube, tmp_path: Path) -> None:
    memory = PreviewMemory(tmp_path / "previews.json")
    detected = await preview_defaults(
        demo_kube, "shop", "orders", workload_kind="Deployment", workload="orders", memory=memory
    )
    assert detected is not None and detected.hostname == "shop.waylay.local"
    key = workload_key(demo_kube.context.name, "shop", "Deployment", "orders")
    memory.remember(key, PreviewTarget(host="ingress.ingress", port=80, hostname="x.test"))
    again = await preview_defaults(
        demo_kube, "shop", "orders", workload_kind="Deployment", workload="orders", memory=memory
    )
    assert again is not None
    assert (again.port, again.tls, again.hostname) == (80, False, "x.test")
    assert again.source == "your answers last time"
