"""``pods/log`` and ``pods/portforward`` routed from the API server to the kubelet.

Covers: the real client's WebSocket port-forward (``v4.channel.k8s.io``) to a
running pod as the read-only developer, reaching the pod's own loopback
address; ``read_namespaced_pod_log`` as the developer; 404 for the log of a
pod that does not exist; 400 naming the choices when a two-container pod's
log is asked for without a container; the WebSocket GET of
``pods/portforward`` is authorized as ``create`` (as kube-apiserver >= 1.30 does):
a service account allowed only ``get`` is refused with 403.
"""

from __future__ import annotations

import socket

import pytest
from kubernetes import client
from kubernetes.stream import portforward

from tests.sandbox.conftest import SandboxHandle
from tests.sandbox.helpers import deployment, wait_for


def _running_pod(core: client.CoreV1Api, namespace: str, app: str) -> str:
    def find() -> str | None:
        for pod in core.list_namespaced_pod(namespace, label_selector=f"app={app}").items:
            ready = [c.ready for c in pod.status.container_statuses or []]
            if pod.status.phase == "Running" and ready and all(ready):
                return str(pod.metadata.name)
        return None

    return wait_for(find, timeout=30, what=f"a running {app} pod")


def test_portforward_and_logs_as_developer(
    sandbox: SandboxHandle, apps: client.AppsV1Api, namespace: str
) -> None:
    body = deployment("echo")
    body["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/healthz", "port": "http"},
        "periodSeconds": 1,
    }
    apps.create_namespaced_deployment(namespace, body)
    admin = client.CoreV1Api(sandbox.api_client())
    name = _running_pod(admin, namespace, "echo")

    dev_api = sandbox.api_client(sandbox.developer_context)
    dev = client.CoreV1Api(dev_api)
    forward = portforward(dev.connect_get_namespaced_pod_portforward, name, namespace, ports="8080")
    sock = forward.socket(8080)
    sock.setblocking(True)
    sock.settimeout(10)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n")
    reply = b""
    while chunk := _recv(sock):
        reply += chunk
    forward.close()
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"ok\n")

    log = wait_for(lambda: dev.read_namespaced_pod_log(name, namespace), what="a log line")
    assert "listening" in log
    with pytest.raises(client.ApiException) as missing:
        dev.read_namespaced_pod_log("no-such-pod", namespace)
    assert missing.value.status == 404
    dev_api.close()
    admin.api_client.close()


def _account_client(sandbox: SandboxHandle, namespace: str) -> client.ApiClient:
    """A client authenticated as ``system:serviceaccount:NAMESPACE:default``."""
    assert sandbox.sandbox.authenticator is not None
    token = sandbox.sandbox.authenticator.issue_service_account_token(namespace, "default")
    conf = client.Configuration()
    conf.host = sandbox.url
    conf.ssl_ca_cert = str(sandbox.kubeconfig.parent / "ca.crt")
    conf.api_key = {"BearerToken": f"Bearer {token}"}
    return client.ApiClient(conf)


def test_portforward_needs_create(
    sandbox: SandboxHandle, core: client.CoreV1Api, namespace: str
) -> None:
    rbac = client.RbacAuthorizationV1Api(sandbox.api_client())
    role = {
        "metadata": {"name": "pf"},
        "rules": [{"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["get"]}],
    }
    rbac.create_namespaced_role(namespace, role)
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "pf"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pf"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
        },
    )
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "target"},
            "spec": {"containers": [{"name": "a", "image": "waylay/demo-http-echo:1.0"}]},
        },
    )
    wait_for(lambda: core.list_namespaced_service_account(namespace).items, what="default account")
    account = client.CoreV1Api(_account_client(sandbox, namespace))
    with pytest.raises(client.ApiException) as denied:
        portforward(account.connect_get_namespaced_pod_portforward, "target", namespace, ports="80")
    assert "Handshake status 403" in str(denied.value), str(denied.value)
    role["rules"][0]["verbs"] = ["create"]
    rbac.replace_namespaced_role("pf", namespace, role)
    wait_for(
        lambda: core.read_namespaced_pod("target", namespace).status.phase == "Running",
        what="target running",
    )
    forward = portforward(
        account.connect_get_namespaced_pod_portforward, "target", namespace, ports="80"
    )
    forward.close()
    account.api_client.close()
    rbac.api_client.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(4096)
    except OSError:
        return b""


def test_log_needs_container_name(core: client.CoreV1Api, namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "two"},
        "spec": {
            "containers": [
                {"name": "a", "image": "waylay/demo-http-echo:1.0"},
                {"name": "b", "image": "waylay/demo-tcp-echo:1.0"},
            ]
        },
    }
    core.create_namespaced_pod(namespace, pod)
    with pytest.raises(client.ApiException) as choose:
        core.read_namespaced_pod_log("two", namespace)
    assert choose.value.status == 400
    assert "[a b]" in choose.value.body
