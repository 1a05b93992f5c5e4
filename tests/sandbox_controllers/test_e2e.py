"""The controllers end to end, through the sandbox's HTTPS API, the real
``kubernetes`` client and the real ``kubectl`` (kubectl tests skip without it).

A stand-in kubelet (the real one is not started) runs pods by writing their
status through the API and finishes their graceful deletion.

Covers: a Deployment created with the client rolls out and ``kubectl rollout
status`` reports success; ``kubectl set image`` makes a second ReplicaSet and
the old one ends at 0 while ``rollout status`` follows; ``kubectl rollout
restart`` is revision 3 and ``kubectl rollout history`` lists the revisions; ``kubectl rollout undo
--to-revision=1`` reuses revision 1's ReplicaSet as revision 4;
every Deployment/ReplicaSet/pod the controllers wrote deserializes into the
client's models; ``kubectl rollout status`` for a StatefulSet; Endpoints and
EndpointSlices read through the client list only ready pods and follow a
renamed named port.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.sandbox.helpers import wait_for

from .e2e import Server, StandInKubelet, serve
from .helpers import taken_over_containers

needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl is not installed"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve(tmp_path_factory.mktemp("controllers-e2e"))


@pytest.fixture
def api(server: Server) -> Iterator[client.ApiClient]:
    with server.api_client() as api_client:
        yield api_client


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def deployment_body(name: str, replicas: int, image: str = "demo/hello:1") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "ports": [{"name": "http", "containerPort": 8080}],
                        }
                    ]
                },
            },
        },
    }


@needs_kubectl
def test_deployment_rollouts_with_kubectl(
    server: Server, api: client.ApiClient, namespace: str
) -> None:
    apps = client.AppsV1Api(api)
    with StandInKubelet(api, namespace, server):
        apps.create_namespaced_deployment(namespace, deployment_body("hello", 3))
        out = server.kubectl_ok(
            "rollout", "status", "deployment/hello", "-n", namespace, "--timeout=60s"
        )
        assert 'deployment "hello" successfully rolled out' in out

        server.kubectl_ok("set", "image", "deployment/hello", "app=demo/hello:2", "-n", namespace)
        out = server.kubectl_ok(
            "rollout", "status", "deployment/hello", "-n", namespace, "--timeout=60s"
        )
        assert "successfully rolled out" in out

        rs_list = apps.list_namespaced_replica_set(namespace).items
        assert sorted(
            (rs.spec.replicas, rs.metadata.annotations["deployment.kubernetes.io/revision"])
            for rs in rs_list
        ) == [(0, "1"), (3, "2")]
        d = apps.read_namespaced_deployment("hello", namespace)
        assert (
            d.status.updated_replicas == d.status.available_replicas == d.status.ready_replicas == 3
        )
        assert {c.type: c.reason for c in d.status.conditions} == {
            "Available": "MinimumReplicasAvailable",
            "Progressing": "NewReplicaSetAvailable",
        }
        pods = (
            client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=hello").items
        )
        assert len(pods) == 3 and {p.spec.containers[0].image for p in pods} == {"demo/hello:2"}

        server.kubectl_ok("rollout", "restart", "deployment/hello", "-n", namespace)
        server.kubectl_ok("rollout", "status", "deployment/hello", "-n", namespace, "--timeout=60s")
        history = server.kubectl_ok("rollout", "history", "deployment/hello", "-n", namespace)
        assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == [
            "1",
            "2",
            "3",
        ]

        server.kubectl_ok("rollout", "undo", "deployment/hello", "--to-revision=1", "-n", namespace)
        server.kubectl_ok("rollout", "status", "deployment/hello", "-n", namespace, "--timeout=60s")
        revisions = {
            rs.metadata.annotations["deployment.kubernetes.io/revision"]: rs.spec.replicas
            for rs in apps.list_namespaced_replica_set(namespace).items
        }
        assert revisions == {"2": 0, "3": 0, "4": 3}  # revision 1's ReplicaSet is reused as 4
        pods = (
            client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=hello").items
        )
        assert {p.spec.containers[0].image for p in pods} == {"demo/hello:1"}


@needs_kubectl
def test_statefulset_rollout_status(server: Server, api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(api)
    body = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 3,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "demo/db:1"}]},
            },
        },
    }
    with StandInKubelet(api, namespace, server):
        apps.create_namespaced_stateful_set(namespace, body)
        out = server.kubectl_ok(
            "rollout", "status", "statefulset/db", "-n", namespace, "--timeout=60s"
        )
        assert "partitioned roll out complete" in out or "rolling update complete" in out
        names = sorted(
            p.metadata.name for p in client.CoreV1Api(api).list_namespaced_pod(namespace).items
        )
        assert names == ["db-0", "db-1", "db-2"]
        sts = apps.read_namespaced_stateful_set("db", namespace)
        assert sts.status.current_revision == sts.status.update_revision
        assert sts.status.ready_replicas == 3


def test_endpoints_through_the_client(
    server: Server, api: client.ApiClient, namespace: str
) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    discovery = client.DiscoveryV1Api(api)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "hello"},
        "spec": {
            "selector": {"app": "hello"},
            "ports": [{"name": "web", "port": 80, "targetPort": "http"}],
        },
    }
    core.create_namespaced_service(namespace, service)
    with StandInKubelet(api, namespace, server) as kubelet:
        decided: dict[str, bool] = {}

        def alternate(pod: Any) -> bool:
            """Every other pod (in the order first seen) stays unready."""
            return decided.setdefault(pod.metadata.name, len(decided) % 2 == 0)

        kubelet.ready = alternate
        apps.create_namespaced_deployment(namespace, deployment_body("hello", 4))

        def split() -> tuple[list[str], list[str]] | None:
            pods = core.list_namespaced_pod(namespace, label_selector="app=hello").items
            if len(pods) != 4 or not all(p.status.pod_ip for p in pods):
                return None
            ready = sorted(p.status.pod_ip for p in pods if kubelet.ready(p))
            not_ready = sorted(p.status.pod_ip for p in pods if not kubelet.ready(p))
            ep = core.read_namespaced_endpoints("hello", namespace)
            subsets = ep.subsets or []
            got_ready = sorted(a.ip for s in subsets for a in s.addresses or [])
            got_not_ready = sorted(a.ip for s in subsets for a in s.not_ready_addresses or [])
            assert len(ready) == len(not_ready) == 2
            return (ready, not_ready) if (got_ready, got_not_ready) == (ready, not_ready) else None

        wait_for(split, what="Endpoints to split ready and unready pods")
        ep = core.read_namespaced_endpoints("hello", namespace)
        assert [p.port for s in ep.subsets for p in s.ports] == [8080]

        kubelet.ready = lambda pod: True
        containers = taken_over_containers()
        apps.patch_namespaced_deployment(
            "hello", namespace, {"spec": {"template": {"spec": {"containers": containers}}}}
        )

        def moved() -> bool:
            ep = core.read_namespaced_endpoints("hello", namespace)
            subsets = ep.subsets or []
            slices = discovery.list_namespaced_endpoint_slice(
                namespace, label_selector="kubernetes.io/service-name=hello"
            ).items
            return (
                [sorted(p.port for p in s.ports) for s in subsets] == [[9900]]
                and len(subsets[0].addresses or []) == 4
                and {p.port for s in slices for p in s.ports or []} == {9900}
                and sum(len(s.endpoints) for s in slices) == 4
            )

        wait_for(moved, timeout=30, what="endpoints on the agent's port 9900")
