"""What ``waylay install`` makes (``core.install.manifests``), checked without a cluster.

Covers: the webhook configuration (failurePolicy Ignore, short timeout,
sideEffects None, v1 reviews, skips kube-system and waylay's namespace, only
pod CREATE) with a caBundle that verifies the serving certificate, whose names
are the Service's DNS names; least privilege for the manager (no wildcards,
no cluster-wide Secrets or ConfigMaps, its own two objects by name); the
shipped developer role is read-only plus pods/portforward; the manager passes
the restricted Pod Security Standard; ``--dry-run -o yaml`` renders every
object; the proof pod is one the injector accepts.
"""

from __future__ import annotations

import base64
from typing import Any

import jsonpatch  # type: ignore[import-untyped]
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
