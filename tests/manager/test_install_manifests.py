"""What ``waylay install`` makes (``core.install.manifests``), checked without a cluster.

Covers: the webhook configuration (failurePolicy Ignore, short timeout,
sideEffects None, v1 reviews, skips kube-system and waylay's namespace, only
pod CREATE) with a caBundle that verifies the serving certificate, whose names
are the Service's DNS names; least privilege for the manager (no wildcards,
no cluster-wide Secrets or ConfigMaps, its own two objects by name); the
shipped developer role is read-only plus pods/portforward; the manager passes
the restricted Pod Security Standard; ``--dry-run -o yaml`` renders every
object; the proof pod is one the injector accepts. With a preview domain: the
Ingress for ``*.D`` (TLS secret and class when given) points at the manager's
``preview`` Service port, which the container exposes, and the manager is told
the domain, port and URL scheme; without one none of that exists; a domain
that cannot be a wildcard is refused before anything is made.
"""

from __future__ import annotations

import base64
from typing import Any

import jsonpatch  # type: ignore[import-untyped]
import pytest
import yaml
from cryptography import x509

from core.install import (
    DEVELOPER_ROLE,
    MANAGER,
    InstallOptions,
    manifests,
    new_tls,
    proof_pod,
    render_yaml,
)
from core.preview import PREVIEW_INGRESS
from core.preview_models import PreviewError
from core.protocol import AGENT_CONTAINER
from webhook.inject import build_response
from webhook.review import AdmissionReview

OPTS = InstallOptions(namespace="wl")
TLS = new_tls("wl")
OBJECTS = manifests(OPTS, TLS)


def find(kind: str, name: str) -> dict[str, Any]:
    return next(o for o in OBJECTS if o["kind"] == kind and o["metadata"]["name"] == name)


def test_webhook_configuration() -> None:
    config = OBJECTS[-1]
    assert config["kind"] == "MutatingWebhookConfiguration"
    hook = config["webhooks"][0]
    assert hook["failurePolicy"] == "Ignore"
    assert hook["timeoutSeconds"] <= 10
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    skipped = hook["namespaceSelector"]["matchExpressions"][0]
    assert skipped["operator"] == "NotIn" and set(skipped["values"]) == {"kube-system", "wl"}
    ca = x509.load_pem_x509_certificate(base64.b64decode(hook["clientConfig"]["caBundle"]))
    cert = x509.load_pem_x509_certificate(TLS.cert_pem.encode())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{MANAGER}.wl.svc" in names.get_values_for_type(x509.DNSName)
    assert hook["clientConfig"]["service"]["namespace"] == "wl"


def test_manager_rbac_is_least_privilege() -> None:
    cluster_rules = find("ClusterRole", MANAGER)["rules"]
    for rule in cluster_rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        assert not {"secrets", "configmaps"} & set(rule["resources"])
        assert not {"create", "update", "escalate", "bind"} & set(rule["verbs"])
    own = find("Role", MANAGER)["rules"]
    assert {r["resources"][0]: r["resourceNames"] for r in own} == {
        "configmaps": ["waylay-settings"],
        "secrets": ["waylay-apikeys"],
    }


def test_developer_role_is_read_only_plus_portforward() -> None:
    for rule in find("ClusterRole", DEVELOPER_ROLE)["rules"]:
        writes = set(rule["verbs"]) - {"get", "list", "watch"}
        assert not writes or rule["resources"] == ["pods/portforward"]


def test_manager_pod_is_restricted() -> None:
    deployment = find("Deployment", MANAGER)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == MANAGER
    assert "initContainers" not in pod
    sc = pod["containers"][0]["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_dry_run_yaml_renders_every_object() -> None:
    docs = list(yaml.safe_load_all(render_yaml(OPTS, TLS)))
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        (o["kind"], o["metadata"]["name"]) for o in OBJECTS
    ]


def test_proof_pod_is_injected_by_the_injector() -> None:
    pod = proof_pod(OPTS, "default")
    review = AdmissionReview.model_validate(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u",
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE",
                "object": pod,
            },
        }
    )
    response = build_response(review=review, manager_address="m:1", agent_image="waylay/agent")
    injected = jsonpatch.apply_patch(pod, response.patch_ops())
    assert AGENT_CONTAINER in [c["name"] for c in injected["spec"]["containers"]]


def _env(objects: list[dict[str, Any]]) -> dict[str, str]:
    dep = next(o for o in objects if o["kind"] == "Deployment")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_preview_domain_adds_the_ingress_and_the_router_port() -> None:
    opts = InstallOptions(
        namespace="wl",
        preview_domain="Preview.Example.COM.",
        preview_tls_secret="wildcard-tls",
        preview_ingress_class="nginx",
    )
    objects = manifests(opts, TLS)
    assert objects[-1]["kind"] == "MutatingWebhookConfiguration"  # still made last
    ingress = next(o for o in objects if o["kind"] == "Ingress")
    assert ingress["metadata"]["name"] == PREVIEW_INGRESS
    assert ingress["metadata"]["namespace"] == "wl"
    assert ingress["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "waylay"
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["*.preview.example.com"], "secretName": "wildcard-tls"}]
    (rule,) = spec["rules"]
    assert rule["host"] == "*.preview.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = next(o for o in objects if o["kind"] == "Service")
    assert backend["name"] == service["metadata"]["name"] == MANAGER
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["preview"]["port"] == backend["port"]["number"] == 8083
    dep = next(o for o in objects if o["kind"] == "Deployment")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "preview", "containerPort": ports["preview"]["targetPort"]} in container[
        "ports"
    ]
    env = _env(objects)
    assert env["WAYLAY_PREVIEW_DOMAIN"] == "preview.example.com"
    assert env["WAYLAY_PREVIEW_PORT"] == "8083"
    assert env["WAYLAY_PREVIEW_SCHEME"] == "https"
    plain = manifests(InstallOptions(namespace="wl", preview_domain="p.example.com"), TLS)
    assert _env(plain)["WAYLAY_PREVIEW_SCHEME"] == "http"
    assert "tls" not in next(o for o in plain if o["kind"] == "Ingress")["spec"]


def test_no_preview_domain_no_router() -> None:
    assert not [o for o in OBJECTS if o["kind"] == "Ingress"]
    assert not [k for k in _env(OBJECTS) if k.startswith("WAYLAY_PREVIEW")]
    service = find("Service", MANAGER)
    assert "preview" not in {p["name"] for p in service["spec"]["ports"]}


def test_developer_role_reads_ingresses_for_preview_defaults() -> None:
    rules = find("ClusterRole", DEVELOPER_ROLE)["rules"]
    assert {
        "apiGroups": ["networking.k8s.io"],
        "resources": ["ingresses"],
        "verbs": ["get", "list", "watch"],
    } in rules


@pytest.mark.parametrize("domain", ["localhost", "*.example.com"])
def test_unusable_preview_domain_is_refused(domain: str) -> None:
    with pytest.raises(PreviewError) as err:
        manifests(InstallOptions(preview_domain=domain), TLS)
    assert "--preview-domain" in err.value.hint
