"""The runtime's pure parts, without processes.

Covers: image names lose registry, tag and digest, and unknown images resolve
to nothing; IPAM blocks are exclusive between claimers and come back when
released, pools hand out addresses round-robin and refuse when full; env
resolution (``$(VAR)`` expansion and ``$$`` escapes, optional refs, service
links, missing keys); Ingress routing (exact host over wildcard over
host-less, longest path, Exact before Prefix, whole-element prefixes,
default backend) and Service port resolution by name and number; log tails;
Go-style back-off durations; a rotated log keeps a follower reading; the
demo's next steps use node ports when ports 80/443 could not be bound.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sandbox.images import image_name, resolve
from sandbox.images.ingress_routes import Backend, resolve_service, route
from sandbox.ipam import AddressPool, Ipam, IpamError
from sandbox.kubelet_container import format_duration
from sandbox.kubelet_env import EnvError, container_env, expand, service_links
from sandbox.kubelet_logs import tail


@pytest.mark.parametrize(
    ("image", "name"),
    [
        ("waylay/agent", "waylay/agent"),
        ("waylay/agent:1.2", "waylay/agent"),
        ("ghcr.io/waylay/agent:1.2@sha256:abc", "waylay/agent"),
        ("localhost:5000/waylay/demo-http-echo", "waylay/demo-http-echo"),
        ("docker.io/library/nginx:1.27", "nginx"),
    ],
)
def test_image_names(image: str, name: str) -> None:
    assert image_name(image) == name


def test_unknown_images_do_not_resolve() -> None:
    assert resolve("nginx:1.27") is None
    image = resolve("waylay/manager:0.1")
    assert image is not None and image.entrypoint == ("python", "-m", "webhook")


def test_ipam_blocks_are_exclusive(tmp_path: Path) -> None:
    with Ipam.claim(lock_dir=tmp_path) as first, Ipam.claim(lock_dir=tmp_path) as second:
        assert first.block != second.block
        assert first.pod_cidr != second.pod_cidr
        block = first.block
    with Ipam.claim(block, lock_dir=tmp_path) as again:
        assert again.block == block


def test_ipam_pools() -> None:
    ipam = Ipam(7)
    assert ipam.allocate_pod_ip() == "127.7.0.2"
    assert ipam.allocate_service_ip() == "127.7.128.1"
    assert ipam.reserve_service_ip("127.7.128.9")
    assert not ipam.reserve_service_ip("127.7.128.9")
    assert not ipam.reserve_service_ip("127.8.128.9")
    pool = AddressPool(first=10, last=11)
    a, b = pool.allocate(), pool.allocate()
    with pytest.raises(IpamError):
        pool.allocate()
    pool.release(a)
    assert pool.allocate() == a and a != b


def test_env_expansion_and_links() -> None:
    assert expand("$(A)-$(B)-$$(A)", {"A": "1"}) == "1-$(B)-$(A)"
    links = service_links(
        [
            {
                "metadata": {"name": "my-svc"},
                "spec": {"clusterIP": "127.1.128.1", "ports": [{"name": "http", "port": 80}]},
            },
            {"metadata": {"name": "headless"}, "spec": {"clusterIP": "None", "ports": []}},
        ]
    )
    assert links == {
        "MY_SVC_SERVICE_HOST": "127.1.128.1",
        "MY_SVC_SERVICE_PORT": "80",
        "MY_SVC_SERVICE_PORT_HTTP": "80",
    }


def test_env_optional_and_missing_refs() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {}}
    objects = {("configmaps", "ns", "cm"): {"data": {"a": "1"}}}

    def lookup(resource: str, namespace: str, name: str) -> dict | None:
        return objects.get((resource, namespace, name))

    optional = {
        "name": "c",
        "env": [
            {
                "name": "X",
                "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "zz", "optional": True}},
            },
            {
                "name": "Y",
                "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}},
            },
            {"name": "Z", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "a"}}},
        ],
    }
    env = container_env(pod, optional, lookup=lookup, pod_ip="127.1.0.2", base={})
    assert "X" not in env and "Y" not in env and env["Z"] == "1"
    missing = {
        "name": "c",
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "zz"}}}],
    }
    with pytest.raises(EnvError, match="couldn't find key zz in ConfigMap ns/cm"):
        container_env(pod, missing, lookup=lookup, pod_ip="127.1.0.2", base={})


def _ingress(name: str, rules: list[dict], default: str | None = None) -> dict:
    spec: dict = {"rules": rules}
    if default:
        spec["defaultBackend"] = {"service": {"name": default, "port": {"number": 80}}}
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": spec}


def _rule(host: str, *paths: tuple[str, str, str]) -> dict:
    return {
        "host": host,
        "http": {
            "paths": [
                {
                    "path": path,
                    "pathType": kind,
                    "backend": {"service": {"name": service, "port": {"name": "http"}}},
                }
                for path, kind, service in paths
            ]
        },
    }


def test_ingress_routing() -> None:
    ingresses = [
        _ingress(
            "a",
            [
                _rule("shop.test", ("/", "Prefix", "root"), ("/orders", "Prefix", "orders")),
                _rule("shop.test", ("/orders/exact", "Exact", "exact")),
                _rule("*.test", ("/", "Prefix", "wild")),
                _rule("", ("/", "Prefix", "any")),
            ],
            default="fallback",
        )
    ]

    def service(host: str, path: str) -> str | None:
        backend = route(ingresses, host, path)
        return backend.service if backend else None

    assert service("shop.test", "/orders") == "orders"
    assert service("shop.test:8080", "/orders/1") == "orders"
    assert service("shop.test", "/ordersx") == "root"
    assert service("shop.test", "/orders/exact") == "exact"
    assert service("other.test", "/orders") == "wild"
    assert service("a.b.test", "/") == "any"
    only_default = [_ingress("b", [_rule("x.test", ("/x", "Exact", "x"))], default="fallback")]
    assert route(only_default, "y.test", "/") == Backend("ns", "fallback", 80, "b")


def test_service_port_resolution() -> None:
    service = {"spec": {"clusterIP": "127.1.128.4", "ports": [{"name": "http", "port": 80}]}}
    assert resolve_service(service, "http") == ("127.1.128.4", 80)
    assert resolve_service(service, 80) == ("127.1.128.4", 80)
    assert resolve_service(service, 81) is None
    assert resolve_service({"spec": {"clusterIP": "None", "ports": []}}, 80) is None


def test_tail_and_durations() -> None:
    assert tail(b"a\nb\nc\n", 2) == b"b\nc\n"
    assert tail(b"a\nb\nc", 1) == b"c"
    assert tail(b"a\n", 0) == b""
    assert [format_duration(s) for s in (10, 0.5, 160, 300)] == ["10s", "0.5s", "2m40s", "5m0s"]


async def test_log_rotation_keeps_followers_reading(tmp_path: Path) -> None:
    from sandbox.kubelet_logs import read_log
    from sandbox.kubelet_process import LogFile

    log = LogFile(tmp_path / "0.log", max_bytes=8)
    (tmp_path / "0.log").write_bytes(b"")
    log.append(b"aaaa\n")
    reader = read_log(log.path, live=log, follow=True, tail_lines=None)
    assert await asyncio.wait_for(anext(reader), 5) == b"aaaa\n"
    log.append(b"bbbb\n")  # over the limit: rotated first
    assert (tmp_path / "0.log.1").read_bytes() == b"aaaa\n"
    assert await asyncio.wait_for(anext(reader), 5) == b"bbbb\n"
    log.close()
    assert [chunk async for chunk in reader] == []


async def test_next_steps_fall_back_to_node_ports_when_80_is_not_bound() -> None:
    from sandbox.cluster import Cluster
    from sandbox.demo import next_steps

    cluster = Cluster()
    try:
        await cluster.create("namespaces", {"metadata": {"name": "ingress"}})
        service = await cluster.create(
            "services",
            {
                "metadata": {"name": "ingress", "namespace": "ingress"},
                "spec": {
                    "type": "LoadBalancer",
                    "selector": {"app": "x"},
                    "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}],
                },
            },
        )
        service["status"] = {"loadBalancer": {"ingress": [{"ip": "127.9.128.9"}]}}
        await cluster.update("services", service, subresource="status")
        steps = await next_steps(cluster, kubeconfig="kc", ca_file="ca.crt")
        assert "curl http://127.9.128.9/ " in steps
        await cluster.create(
            "events",
            {
                "metadata": {"name": "e1", "namespace": "ingress"},
                "involvedObject": {"kind": "Service", "name": "ingress", "namespace": "ingress"},
                "reason": "FailedToBind",
                "message": "cannot listen on 127.9.128.9:80/TCP: Permission denied",
                "type": "Warning",
            },
        )
        http, https = (p["nodePort"] for p in service["spec"]["ports"])
        steps = await next_steps(cluster, kubeconfig="kc", ca_file="ca.crt")
        assert f"curl http://127.9.128.9:{http}/ " in steps
        assert f"https://shop.waylay.local:{https}/ledger" in steps
    finally:
        cluster.close()
