"""Authentication, RBAC and admission through the real API server and the real client.

The real sandbox (``sandbox.server.Sandbox``: API server, bootstrap objects,
admission, controllers; no kubelet), driven by the ``kubernetes`` client from
the kubeconfig the sandbox writes. Covers: no token and a bad token get
401; developer may read (list pods) and use discovery but is denied
``delete pod`` with kube-apiserver's exact 403 Status body; a service-account
token gets what its RoleBinding grants in its namespace and a 403 elsewhere,
and stops working once the ServiceAccount is deleted; admin creates a
MutatingWebhookConfiguration and a ``generateName`` pod gets a container
injected by a real HTTPS webhook that saw an empty name; Deployment pods in a
namespace matching the webhook's namespaceSelector get the container and
those elsewhere do not; kubectl as developer prints the real Forbidden line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from sandbox.auth import DEVELOPER, Authenticator
from sandbox.rbac import Forbidden
from sandbox.server import ADMIN_CONTEXT, DEVELOPER_CONTEXT, Sandbox
from tests.sandbox_security.webhook_server import WebhookServer
from tests.sandbox_security.webhook_server import hook as webhook_entry

T = TypeVar("T")


@dataclass
class Running:
    sandbox: Sandbox

    @property
    def auth(self) -> Authenticator:
        assert self.sandbox.authenticator is not None
        return self.sandbox.authenticator

    def api(self, user: str) -> client.ApiClient:
        """A client for the ``admin`` or ``developer`` context of the sandbox's kubeconfig."""
        context = {"admin": ADMIN_CONTEXT, "developer": DEVELOPER_CONTEXT}[user]
        return config.new_client_from_config(
            config_file=str(self.sandbox.kubeconfig), context=context
        )

    def token_api(self, token: str | None) -> client.ApiClient:
        """A client that sends ``token`` (or no Authorization header at all)."""
        assert self.sandbox.ca is not None
        ca_file = self.sandbox.directory / "test-ca.crt"
        ca_file.write_bytes(self.sandbox.ca.cert_pem)
        cfg = client.Configuration()
        cfg.host = self.sandbox.url
        cfg.ssl_ca_cert = str(ca_file)
        if token is not None:
            cfg.api_key = {"BearerToken": token}
            cfg.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(cfg)


async def call(fn: Callable[[], T]) -> T:
    """Run a blocking client call off the loop (the server runs on it)."""
    with anyio.fail_after(30):
        return await anyio.to_thread.run_sync(fn)


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Running]:
    box = Sandbox(tmp_path / "sandbox", kubelet=False)
    try:
        with anyio.fail_after(30):
            await box.start()
        yield Running(box)
    finally:
        await box.stop()


def _pod(**meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "app", "image": "demo/app"}]},
    }


async def _namespace_and_pod(admin: client.CoreV1Api) -> None:
    await call(lambda: admin.create_namespace({"metadata": {"name": "shop"}}))
    await call(lambda: admin.create_namespaced_pod("shop", _pod(name="web-1")))


async def test_unauthenticated_is_401(sandbox: Running) -> None:
    for token in (None, "not-a-token"):
        core = client.CoreV1Api(sandbox.token_api(token))
        with pytest.raises(ApiException) as err:
            await call(lambda core=core: core.list_namespace())
        assert err.value.status == 401


async def test_developer_reads_but_cannot_delete(sandbox: Running) -> None:
    admin = client.CoreV1Api(sandbox.api("admin"))
    await _namespace_and_pod(admin)
    dev_client = sandbox.api("developer")
    dev = client.CoreV1Api(dev_client)
    pods = await call(lambda: dev.list_namespaced_pod("shop"))
    assert [p.metadata.name for p in pods.items] == ["web-1"]
    versions = await call(lambda: client.CoreApi(dev_client).get_api_versions())
    assert versions.versions == ["v1"]

    with pytest.raises(ApiException) as err:
        await call(lambda: dev.delete_namespaced_pod("web-1", "shop"))
    assert err.value.status == 403
    assert (
        json.loads(err.value.body)
        == Forbidden(DEVELOPER, "delete", "", "pods", "", "shop", "web-1").status()
    )
    assert json.loads(err.value.body)["message"] == (
        'pods "web-1" is forbidden: User "developer" cannot delete resource "pods" '
        'in API group "" in the namespace "shop"'
    )
    with pytest.raises(ApiException) as err:
        await call(lambda: dev.create_namespaced_config_map("shop", {"metadata": {"name": "c"}}))
    assert err.value.status == 403


async def test_service_account_gets_what_its_role_binding_grants(sandbox: Running) -> None:
    admin_client = sandbox.api("admin")
    admin = client.CoreV1Api(admin_client)
    rbac = client.RbacAuthorizationV1Api(admin_client)
    await _namespace_and_pod(admin)
    await call(lambda: admin.create_namespace({"metadata": {"name": "other"}}))
    await call(
        lambda: admin.create_namespaced_service_account("shop", {"metadata": {"name": "manager"}})
    )
    await call(
        lambda: rbac.create_namespaced_role(
            "shop",
            {
                "metadata": {"name": "config-writer"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["configmaps"],
                        "verbs": ["create", "get", "list"],
                    }
                ],
            },
        )
    )
    await call(
        lambda: rbac.create_namespaced_role_binding(
            "shop",
            {
                "metadata": {"name": "manager-config"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "config-writer",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "manager", "namespace": "shop"}],
            },
        )
    )
    token = sandbox.auth.issue_service_account_token("shop", "manager")
    sa = client.CoreV1Api(sandbox.token_api(token))
    await call(lambda: sa.create_namespaced_config_map("shop", {"metadata": {"name": "settings"}}))
    listed = await call(lambda: sa.list_namespaced_config_map("shop"))
    assert [c.metadata.name for c in listed.items] == ["settings"]

    with pytest.raises(ApiException) as err:
        await call(lambda: sa.list_namespaced_config_map("other"))
    assert err.value.status == 403
    assert json.loads(err.value.body)["message"] == (
        'configmaps is forbidden: User "system:serviceaccount:shop:manager" cannot list '
        'resource "configmaps" in API group "" in the namespace "other"'
    )
    with pytest.raises(ApiException) as err:
        await call(lambda: sa.list_namespaced_pod("shop"))
    assert err.value.status == 403

    await call(lambda: admin.delete_namespaced_service_account("manager", "shop"))
    with pytest.raises(ApiException) as err:
        await call(lambda: sa.list_namespaced_config_map("shop"))
    assert err.value.status == 401


async def test_webhook_injects_into_generate_name_pod(
    sandbox: Running, webhook: WebhookServer
) -> None:
    admin_client = sandbox.api("admin")
    admin = client.CoreV1Api(admin_client)
    await call(lambda: admin.create_namespace({"metadata": {"name": "shop"}}))
    hook = {
        "metadata": {"name": "waylay"},
        "webhooks": [
            webhook_entry(webhook, "inject.waylay.dev", "/inject", url=True, timeoutSeconds=5)
        ],
    }
    adm = client.AdmissionregistrationV1Api(admin_client)
    await call(lambda: adm.create_mutating_webhook_configuration(hook))
    created = await call(lambda: admin.create_namespaced_pod("shop", _pod(generateName="web-")))
    assert created.metadata.name.startswith("web-")
    assert [c.name for c in created.spec.containers] == ["app", "waylay-agent"]
    [review] = webhook.requests("/inject")
    assert review["name"] == ""
    assert review["userInfo"]["username"] == "admin"


async def test_webhook_injects_into_deployment_pods(
    sandbox: Running, webhook: WebhookServer
) -> None:
    admin_client = sandbox.api("admin")
    admin = client.CoreV1Api(admin_client)
    for name, labels in (("shop", {"waylay-inject": "on"}), ("plain", {})):
        body = {"metadata": {"name": name, "labels": labels}}
        await call(lambda body=body: admin.create_namespace(body))
    entry = webhook_entry(
        webhook,
        "inject.waylay.dev",
        "/inject",
        url=True,
        namespaceSelector={"matchLabels": {"waylay-inject": "on"}},
        failurePolicy="Fail",
        timeoutSeconds=5,
    )
    hook = {"metadata": {"name": "waylay"}, "webhooks": [entry]}
    adm = client.AdmissionregistrationV1Api(admin_client)
    await call(lambda: adm.create_mutating_webhook_configuration(hook))
    apps = client.AppsV1Api(admin_client)
    labels = {"app": "web"}
    for ns in ("shop", "plain"):
        deploy = {
            "metadata": {"name": "web", "labels": labels},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": "demo/app"}]},
                },
            },
        }
        await call(lambda ns=ns, deploy=deploy: apps.create_namespaced_deployment(ns, deploy))

    store = sandbox.sandbox.cluster.store if sandbox.sandbox.cluster else None
    assert store is not None
    with anyio.fail_after(20):
        while len(store.list("pods", "shop")) < 2 or len(store.list("pods", "plain")) < 2:
            await anyio.sleep(0.05)
    for pod in store.list("pods", "shop"):
        assert [c["name"] for c in pod["spec"]["containers"]] == ["app", "waylay-agent"]
    for pod in store.list("pods", "plain"):
        assert [c["name"] for c in pod["spec"]["containers"]] == ["app"]
    reviews = webhook.requests("/inject")
    assert len(reviews) == 2
    for review in reviews:
        assert review["name"] == ""
        assert review["namespace"] == "shop"
        assert review["object"]["metadata"]["generateName"].startswith("web-")


@pytest.mark.kubectl
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
async def test_kubectl_shows_the_forbidden_message(sandbox: Running) -> None:
    admin = client.CoreV1Api(sandbox.api("admin"))
    await _namespace_and_pod(admin)
    env = {**os.environ, "KUBECONFIG": str(sandbox.sandbox.kubeconfig)}

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--context", DEVELOPER_CONTEXT, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )

    got = await call(lambda: kubectl("get", "pods", "-n", "shop", "-o", "name"))
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == ["pod/web-1"]
    denied = await call(lambda: kubectl("delete", "pod", "web-1", "-n", "shop"))
    assert denied.returncode != 0
    assert denied.stderr.strip() == (
        'Error from server (Forbidden): pods "web-1" is forbidden: User "developer" cannot '
        'delete resource "pods" in API group "" in the namespace "shop"'
    )
