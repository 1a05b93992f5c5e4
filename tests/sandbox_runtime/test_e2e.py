"""The runtime behind the real API server, driven by the real client and kubectl.

Covers: pods of a Deployment, a StatefulSet and a bare ReplicaSet run and
become Ready (the kubernetes client's models accept their status); a Service's
ClusterIP reaches every replica of a Deployment through the endpoints
controller; a named ``targetPort`` follows the name to another container's
port after a rollout (the agent's port takeover); readiness gates the
Endpoints (notReadyAddresses until the probe passes);
``read_namespaced_pod_log`` with tailLines and ``kubectl logs``;
``kubernetes.stream.portforward`` through the HTTPS API server; in-pod code
reaches the API through ``$KUBECONFIG`` as the pod's service account (RBAC
applies); ``kubectl delete pod`` stops its processes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.sandbox.conftest import SandboxHandle
from tests.sandbox.helpers import wait_for
from tests.sandbox_runtime.helpers import get_via_portforward

pytestmark = pytest.mark.timeout(120)

PROBE = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}


def _template(app: str, **container: Any) -> dict[str, Any]:
    spec = {
        "name": "app",
        "image": "waylay/demo-http-echo:1.0",
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [{"name": "APP", "value": app}],
        "readinessProbe": PROBE,
        **container,
    }
    return {"metadata": {"labels": {"app": app}}, "spec": {"containers": [spec]}}


def _workload(kind: str, name: str, replicas: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": _template(name),
    }
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def _service(app: str, port: dict[str, Any]) -> dict[str, Any]:
    """Service ``app`` selecting ``app=<app>`` on port 80 (to the pods' ``http`` port
    unless ``port`` says otherwise)."""
    ports = [{"port": 80, "targetPort": "http", **port}]
    return {"metadata": {"name": app}, "spec": {"selector": {"app": app}, "ports": ports}}


def _ready_pods(core: client.CoreV1Api, namespace: str, app: str, count: int) -> list[Any]:
    pods = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
    ready = [
        p
        for p in pods
        if p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]
    return ready if len(ready) == count else []


def _get(url: str, host: str | None = None) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    with urllib.request.urlopen(request, timeout=5) as reply:
        return dict(json.loads(reply.read()))


def test_workloads_run_and_a_service_reaches_every_replica(
    sandbox: SandboxHandle, namespace: str, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    apps.create_namespaced_deployment(namespace, _workload("Deployment", "orders", 3))
    apps.create_namespaced_stateful_set(namespace, _workload("StatefulSet", "ledger", 2))
    apps.create_namespaced_replica_set(namespace, _workload("ReplicaSet", "billing", 1))
    core.create_namespaced_service(namespace, _service("orders", {"name": "http"}))
    for app, count in (("orders", 3), ("ledger", 2), ("billing", 1)):
        pods = wait_for(
            lambda a=app, c=count: _ready_pods(core, namespace, a, c), timeout=60, what=app
        )
        for pod in pods:
            status = pod.status.container_statuses[0]
            assert status.ready and status.image_id and pod.status.pod_ip.startswith("127.")
    ip = core.read_namespaced_service("orders", namespace).spec.cluster_ip
    names = {p.metadata.name for p in _ready_pods(core, namespace, "orders", 3)}
    wait_for(
        lambda: (
            {
                a.ip
                for s in core.read_namespaced_endpoints("orders", namespace).subsets or []
                for a in s.addresses or []
            }
            and len(
                [
                    a
                    for s in core.read_namespaced_endpoints("orders", namespace).subsets or []
                    for a in s.addresses or []
                ]
            )
            == 3
        ),
        timeout=30,
        what="3 endpoints",
    )
    seen = {_get(f"http://{ip}:80/")["pod"] for _ in range(12)}
    assert seen == names


def test_readiness_gates_endpoints(
    sandbox: SandboxHandle, namespace: str, core: client.CoreV1Api
) -> None:
    probe = {"exec": {"command": ["test", "-f", "ready"]}, "periodSeconds": 1}
    pod = {
        "metadata": {"name": "gated", "labels": {"app": "gated"}},
        "spec": {"containers": [_template("gated", readinessProbe=probe)["spec"]["containers"][0]]},
    }
    core.create_namespaced_pod(namespace, pod)
    core.create_namespaced_service(namespace, _service("gated", {"targetPort": 8080}))

    def addresses(kind: str) -> list[Any]:
        try:
            endpoints = core.read_namespaced_endpoints("gated", namespace)
        except client.ApiException:
            return []
        return [a for s in endpoints.subsets or [] for a in getattr(s, kind) or []]

    wait_for(lambda: addresses("not_ready_addresses"), timeout=30, what="a not-ready address")
    assert not addresses("addresses")
    uid = core.read_namespaced_pod("gated", namespace).metadata.uid
    kubelet = sandbox.sandbox.kubelet
    assert kubelet is not None
    (kubelet.workers[uid].workdir / "ready").write_text("")
    wait_for(lambda: addresses("addresses"), timeout=30, what="a ready address")


def test_logs_through_the_api_and_kubectl(
    sandbox: SandboxHandle, namespace: str, core: client.CoreV1Api
) -> None:
    script = "for i in 1 2 3 4 5; do echo line $i; done; sleep 300"
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "talker"},
            "spec": {
                "containers": [
                    {"name": "main", "image": "waylay/toolbox", "command": ["sh", "-c", script]}
                ]
            },
        },
    )
    wait_for(
        lambda: core.read_namespaced_pod_log("talker", namespace).count("\n") == 5,
        timeout=30,
        what="five lines",
    )
    assert core.read_namespaced_pod_log("talker", namespace, tail_lines=2) == "line 4\nline 5\n"
    if shutil.which("kubectl"):
        out = subprocess.run(
            [
                "kubectl",
                "--context",
                sandbox.admin_context,
                "logs",
                "-n",
                namespace,
                "talker",
                "--tail=1",
            ],
            env={**os.environ, "KUBECONFIG": str(sandbox.kubeconfig)},
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        assert out == "line 5\n"


def test_client_portforward_through_the_api_server(
    sandbox: SandboxHandle, namespace: str, core: client.CoreV1Api
) -> None:
    core.create_namespaced_pod(
        namespace,
        {"metadata": {"name": "fwd", "labels": {"app": "fwd"}}, "spec": _template("fwd")["spec"]},
    )
    wait_for(lambda: _ready_pods(core, namespace, "fwd", 1), timeout=30, what="fwd Ready")
    reply = get_via_portforward(core, "fwd", namespace, "/through-the-api", timeout=10)
    assert b'"pod": "fwd"' in reply and b"/through-the-api" in reply


def test_in_pod_code_calls_the_api_as_its_service_account(
    sandbox: SandboxHandle, namespace: str, core: client.CoreV1Api
) -> None:
    script = (
        "from kubernetes import client, config\n"
        "try:\n"
        "    config.load_incluster_config()\n"
        "except config.ConfigException:\n"
        "    config.load_kube_config()\n"
        f"api = client.CoreV1Api()\n"
        "try:\n"
        f"    api.list_namespaced_secret('{namespace}')\n"
        "    print('ALLOWED')\n"
        "except client.ApiException as e:\n"
        "    print('STATUS', e.status, e.reason)\n"
        "    print(e.body)\n"
    )
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "caller"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {"name": "main", "image": "waylay/toolbox", "command": ["python", "-c", script]}
                ],
            },
        },
    )
    wait_for(
        lambda: core.read_namespaced_pod("caller", namespace).status.phase == "Succeeded",
        timeout=60,
        what="caller finished",
    )
    out = core.read_namespaced_pod_log("caller", namespace)
    assert "STATUS 403" in out, out
    assert f"system:serviceaccount:{namespace}:default" in out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and " Z " not in Path(f"/proc/{pid}/stat").read_text()


def test_deleting_a_pod_stops_its_process(
    sandbox: SandboxHandle, namespace: str, core: client.CoreV1Api
) -> None:
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "doomed", "labels": {"app": "doomed"}},
            "spec": _template("doomed")["spec"],
        },
    )
    pod = wait_for(lambda: _ready_pods(core, namespace, "doomed", 1), timeout=30, what="Ready")[0]
    kubelet = sandbox.sandbox.kubelet
    assert kubelet is not None
    process = kubelet.workers[pod.metadata.uid].containers[0].process
    assert process is not None and process.pid is not None
    pid = process.pid
    core.delete_namespaced_pod("doomed", namespace)
    wait_for(lambda: not _alive(pid), timeout=30, what="process gone")

    def gone() -> bool:
        try:
            core.read_namespaced_pod("doomed", namespace)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, timeout=30, what="pod object removed")


def test_named_target_port_follows_a_renamed_port(
    sandbox: SandboxHandle, namespace: str, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    # What the agent's port takeover does: the app's port is renamed and a sidecar
    # declares the Service's targetPort name on its own port; after the rollout the
    # Service reaches the sidecar, with no change to the Service.
    apps.create_namespaced_deployment(namespace, _workload("Deployment", "shop", 1))
    core.create_namespaced_service(namespace, _service("shop", {"name": "web"}))
    wait_for(lambda: _ready_pods(core, namespace, "shop", 1), timeout=60, what="shop Ready")
    ip = core.read_namespaced_service("shop", namespace).spec.cluster_ip

    def answered_by() -> str | None:
        try:
            return str(_get(f"http://{ip}:80/")["app"])
        except OSError:
            return None

    assert wait_for(answered_by, timeout=30, what="a reply") == "shop"
    app = {**_template("shop")["spec"]["containers"][0]}
    app["ports"] = [{"name": "wl-http", "containerPort": 8080}]
    app["readinessProbe"] = {**PROBE, "httpGet": {"path": "/healthz", "port": "wl-http"}}
    sidecar = {
        "name": "sidecar",
        "image": "waylay/demo-http-echo:1.0",
        "ports": [{"name": "http", "containerPort": 9090}],
        "env": [{"name": "APP", "value": "sidecar"}, {"name": "PORT", "value": "9090"}],
        "readinessProbe": PROBE,
    }
    apps.patch_namespaced_deployment(
        "shop", namespace, {"spec": {"template": {"spec": {"containers": [app, sidecar]}}}}
    )
    wait_for(lambda: answered_by() == "sidecar", timeout=60, what="the sidecar answering")
