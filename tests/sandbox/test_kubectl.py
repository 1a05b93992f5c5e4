"""The real ``kubectl`` against the sandbox (skipped when kubectl is absent).

Covers: ``version``; ``api-resources``; ``get -A``; ``apply -f`` creating and
then updating (client-side apply: OpenAPI v3 field validation, strategic
merge patch with ``$setElementOrder``); ``apply --server-side``; ``patch``
strategic, merge and json; ``scale`` (merge patch on ``/scale``);
``rollout status`` (list + watch with bookmarks, Deployment controller);
``logs`` (kubelet); ``delete`` (DeleteOptions body); ``fieldValidation``
Strict refuses an unknown field and Warn warns; the developer context is
refused writes with the real 403 message; ``--as``/``--as-group`` impersonation
(allowed for the admin, refused to the developer).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox.conftest import SandboxHandle
from tests.sandbox.helpers import wait_for

pytestmark = [
    pytest.mark.kubectl,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
  labels: {{app: echo}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: echo}}
  template:
    metadata:
      labels: {{app: echo}}
    spec:
      containers:
      - name: echo
        image: waylay/demo-http-echo:1.0
        env:
{env}
        ports:
        - {{name: http, containerPort: 8080}}
        readinessProbe:
          httpGet: {{path: /healthz, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  selector: {{app: echo}}
  ports:
  - {{name: http, port: 80, targetPort: http}}
"""


def _env(**values: str) -> str:
    return "\n".join(f"        - {{name: {k}, value: '{v}'}}" for k, v in values.items())


def kubectl(
    sandbox: SandboxHandle,
    *args: str,
    context: str | None = None,
    stdin: str | None = None,
    check: bool = True,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(sandbox.kubeconfig)}
    command = ["kubectl", "--context", context or sandbox.admin_context, *args]
    result = subprocess.run(
        command, input=stdin, capture_output=True, text=True, env=env, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def get_json(sandbox: SandboxHandle, *args: str) -> Any:
    return json.loads(kubectl(sandbox, "get", *args, "-o", "json").stdout)


def test_discovery_and_get_all(sandbox: SandboxHandle, namespace: str) -> None:
    assert "v1.32" in kubectl(sandbox, "version").stdout
    resources = kubectl(sandbox, "api-resources").stdout
    for line in ("deployments", "statefulsets", "mutatingwebhookconfigurations", "endpointslices"):
        assert line in resources
    assert "deploy" in resources.split("deployments", 1)[1].splitlines()[0]
    everywhere = kubectl(sandbox, "get", "namespaces,serviceaccounts", "-A").stdout
    assert "kube-system" in everywhere and namespace in everywhere
    kubectl(sandbox, "get", "deploy,rs,sts,pods,svc,ep,cm,secrets", "-A")


def test_apply_scale_rollout_logs_delete(
    sandbox: SandboxHandle, namespace: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "echo.yaml"
    manifest.write_text(DEPLOYMENT.format(replicas=1, env=_env(A="1", B="2")))
    out = kubectl(sandbox, "apply", "-n", namespace, "-f", str(manifest)).stdout
    assert "deployment.apps/echo created" in out and "service/echo created" in out

    manifest.write_text(DEPLOYMENT.format(replicas=1, env=_env(B="2", C="3")))
    out = kubectl(sandbox, "apply", "-n", namespace, "-f", str(manifest)).stdout
    assert "deployment.apps/echo configured" in out and "service/echo unchanged" in out
    dep = get_json(sandbox, "-n", namespace, "deployment", "echo")
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["name"] for e in env] == ["B", "C"]

    out = kubectl(sandbox, "scale", "-n", namespace, "deployment/echo", "--replicas=2").stdout
    assert "scaled" in out
    assert get_json(sandbox, "-n", namespace, "deployment", "echo")["spec"]["replicas"] == 2

    out = kubectl(
        sandbox,
        "rollout",
        "status",
        "-n",
        namespace,
        "deployment/echo",
        "--timeout=60s",
        timeout=90,
    ).stdout
    assert "successfully rolled out" in out

    pods = get_json(sandbox, "-n", namespace, "pods", "-l", "app=echo")["items"]
    running = [p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running"]
    assert running
    logs = wait_for(
        lambda: kubectl(sandbox, "logs", "-n", namespace, running[0], check=False).returncode == 0,
        what="kubectl logs",
    )
    assert logs

    out = kubectl(sandbox, "delete", "-n", namespace, "-f", str(manifest), "--wait=false").stdout
    assert 'deployment.apps "echo" deleted' in out


def test_server_side_apply(sandbox: SandboxHandle, namespace: str) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ssa", "namespace": namespace},
        "data": {"a": "1"},
    }
    out = kubectl(sandbox, "apply", "--server-side", "-f", "-", stdin=json.dumps(doc)).stdout
    assert "serverside-applied" in out
    doc["data"]["b"] = "2"
    kubectl(sandbox, "apply", "--server-side", "-f", "-", stdin=json.dumps(doc))
    assert get_json(sandbox, "-n", namespace, "configmap", "ssa")["data"] == {"a": "1", "b": "2"}


def test_patch_flavours(sandbox: SandboxHandle, namespace: str) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "p", "namespace": namespace, "labels": {"one": "1"}},
        "data": {"a": "1"},
    }
    kubectl(sandbox, "apply", "-f", "-", stdin=json.dumps(doc))
    kubectl(sandbox, "patch", "-n", namespace, "configmap", "p", "-p", '{"data":{"b":"2"}}')
    kubectl(
        sandbox,
        "patch",
        "-n",
        namespace,
        "configmap",
        "p",
        "--type=merge",
        "-p",
        '{"data":{"a":null}}',
    )
    kubectl(
        sandbox,
        "patch",
        "-n",
        namespace,
        "configmap",
        "p",
        "--type=json",
        "-p",
        '[{"op":"add","path":"/metadata/labels/two","value":"2"}]',
    )
    got = get_json(sandbox, "-n", namespace, "configmap", "p")
    assert got["data"] == {"b": "2"}
    assert got["metadata"]["labels"] == {"one": "1", "two": "2"}
    kubectl(sandbox, "delete", "-n", namespace, "configmap", "p")
    missing = kubectl(sandbox, "get", "-n", namespace, "configmap", "p", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_strict_field_validation(sandbox: SandboxHandle, namespace: str) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "typo", "namespace": namespace, "labelz": {"a": "b"}},
        "data": {"a": "1"},
    }
    refused = kubectl(sandbox, "apply", "-f", "-", stdin=json.dumps(doc), check=False)
    assert refused.returncode != 0
    assert 'strict decoding error: unknown field "metadata.labelz"' in refused.stderr
    warned = kubectl(
        sandbox, "apply", "--validate=warn", "-f", "-", stdin=json.dumps(doc), check=False
    )
    assert warned.returncode == 0, warned.stderr
    assert 'unknown field "metadata.labelz"' in warned.stderr


def test_developer_context_is_read_only(sandbox: SandboxHandle, namespace: str) -> None:
    dev = sandbox.developer_context
    assert (
        "No resources found" in kubectl(sandbox, "get", "pods", "-n", namespace, context=dev).stderr
    )
    denied = kubectl(sandbox, "delete", "namespace", namespace, context=dev, check=False)
    assert denied.returncode != 0
    assert 'User "developer" cannot delete resource "namespaces"' in denied.stderr


def test_impersonation(sandbox: SandboxHandle, namespace: str) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "as", "namespace": namespace},
    }
    as_dev = kubectl(
        sandbox, "--as=developer", "apply", "-f", "-", stdin=json.dumps(doc), check=False
    )
    assert as_dev.returncode != 0
    assert 'User "developer" cannot create resource "configmaps"' in as_dev.stderr
    kubectl(sandbox, "--as=developer", "get", "pods", "-n", namespace)

    account = f"system:serviceaccount:{namespace}:default"
    as_sa = kubectl(sandbox, f"--as={account}", "get", "pods", "-n", namespace, check=False)
    assert as_sa.returncode != 0 and f'User "{account}" cannot list' in as_sa.stderr

    masters = kubectl(
        sandbox,
        "--as=someone",
        "--as-group=system:masters",
        "apply",
        "-f",
        "-",
        stdin=json.dumps(doc),
    )
    assert "created" in masters.stdout

    escalate = kubectl(
        sandbox, "--as=admin", "get", "pods", context=sandbox.developer_context, check=False
    )
    assert escalate.returncode != 0
    assert 'cannot impersonate resource "users"' in escalate.stderr
