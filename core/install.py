"""``waylay install`` / ``waylay uninstall``: the traffic manager in the cluster.

Install makes (in this order) the namespace, the manager's ServiceAccount and
least-privilege RBAC, the shipped ``waylay-developer`` ClusterRole (read-only
plus ``pods/portforward``, for admins to bind to developers), a CA and the
webhook's serving certificate, the mode ConfigMap and API-key Secret, the
manager Deployment and Service; waits for the manager; registers the
MutatingWebhookConfiguration (failurePolicy Ignore, short timeout, skipping
``kube-system`` and waylay's own namespace) and then **proves** the webhook
works with a ``dryRun=All`` pod that must come back with the agent injected.
Re-running it upgrades in place (the certificate, mode and keys are kept).

With ``preview_domain`` D (``--preview-domain``) the manager also serves the
preview router (``webhook.preview``) on its ``preview`` port, and install
routes ``*.D`` to it with the Ingress ``waylay-preview`` (TLS from
``preview_tls_secret`` when given); an upgrade without a domain removes both.

Uninstall first stops injection, then removes the agents from every workload
(annotation off, bare ReplicaSets' pods replaced, Services' target ports
restored, the ReplicaSets the intercepts left behind deleted), then every
object install made (the preview Ingress whether or not it is told the
domain). Nothing remains.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from core.apikeys import APIKEYS_SECRET, SETTINGS_CONFIGMAP, issue_key, settings_from_objects
from core.certs import make_ca
from core.errors import ManagerError
from core.kube import Kube
from core.preview import (
    PREVIEW_INGRESS,
    PREVIEW_PORT,
    preview_ingress_manifest,
    preview_service_port,
)
from core.protocol import (
    AGENT_CONFIG_ANNOTATION,
    AGENT_CONTAINER,
    TARGET_PORT_UNDO_ANNOTATION,
    AgentConfig,
    TakeoverPort,
)

__all__ = [
    "DEVELOPER_ROLE",
    "MANAGER",
    "WEBHOOK_CONFIG",
    "InstallFailed",
    "InstallOptions",
    "InstallResult",
    "Tls",
    "install",
    "manifests",
    "new_tls",
    "prove_webhook",
    "render_yaml",
    "uninstall",
]

MANAGER = "waylay-manager"
TLS_SECRET = "waylay-manager-tls"
WEBHOOK_CONFIG = "waylay-agent-injector"
DEVELOPER_ROLE = "waylay-developer"
WEBHOOK_PORT = 8443
AGENT_API_PORT = 8081
CLIENT_API_PORT = 8082
MANAGED = {"app.kubernetes.io/managed-by": "waylay", "app.kubernetes.io/part-of": "waylay"}
PROOF_PREFIX = "waylay-webhook-proof-"
INGRESS_API = "networking.k8s.io/v1"

Progress = Callable[[str], None]


class InstallFailed(ManagerError):
    code = "install"


@dataclass
class InstallOptions:
    namespace: str = "waylay"
    team: bool = False
    manager_image: str = "waylay/manager:0.1.0"
    agent_image: str = "waylay/agent:0.1.0"
    policy: str = "OnDemand"
    timeout: float = 120.0
    """Seconds to wait for the manager, and for agents to leave at uninstall."""
    preview_domain: str = ""
    """``--preview-domain D``: the manager serves preview URLs ``<token>.D``, and
    install routes ``*.D`` to it with the Ingress ``waylay-preview``."""
    preview_tls_secret: str = ""
    """A ``kubernetes.io/tls`` Secret in the install namespace with a certificate
    for ``*.D`` (then preview URLs are ``https://``)."""
    preview_ingress_class: str = ""


@dataclass(frozen=True)
class Tls:
    ca_pem: str
    cert_pem: str
    key_pem: str


@dataclass
class InstallResult:
    upgraded: bool
    admin_key: str | None = None
    """Team mode's first admin key: shown once, never stored in plaintext."""
    proof_namespace: str = ""
    steps: list[str] = field(default_factory=list)


def new_tls(namespace: str) -> Tls:
    ca = make_ca(f"waylay-webhook-ca.{namespace}")
    hosts = [
        MANAGER,
        f"{MANAGER}.{namespace}",
        f"{MANAGER}.{namespace}.svc",
        f"{MANAGER}.{namespace}.svc.cluster.local",
    ]
    cert, key = ca.issue_server_cert(hosts)
    return Tls(ca.cert_pem.decode(), cert.decode(), key.decode())


# ----------------------------------------------------------------- manifests


def _meta(name: str, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(MANAGED)}
    if namespace:
        meta["namespace"] = namespace
    meta.update(extra)
    return meta


def _rule(groups: list[str], resources: list[str], verbs: list[str], **kw: Any) -> dict[str, Any]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs, **kw}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def manifests(opts: InstallOptions, tls: Tls) -> list[dict[str, Any]]:
    """Every object install makes, in the order it makes them."""
    ns = opts.namespace
    workloads = ["deployments", "replicasets", "statefulsets"]
    manager_rules = [
        _rule(["apps"], workloads, ["get", "list", "watch", "patch"]),
        _rule([""], ["pods"], ["get", "list", "watch", "delete"]),
        _rule([""], ["services"], ["get", "list", "patch"]),
        _rule([""], ["events"], ["list"]),
    ]
    developer_rules = [
        _rule(
            [""],
            ["namespaces", "pods", "services", "endpoints", "events"],
            ["get", "list", "watch"],
        ),
        _rule(["apps"], workloads, ["get", "list", "watch"]),
        _rule([""], ["pods/portforward"], ["get", "create"]),
        _rule([""], ["pods/log"], ["get"]),
        # preview defaults: the L5 hostname from the Ingresses routing to a Service
        _rule(["networking.k8s.io"], ["ingresses"], ["get", "list", "watch"]),
    ]
    subject = [{"kind": "ServiceAccount", "name": MANAGER, "namespace": ns}]
    selector = {"app.kubernetes.io/name": MANAGER}
    env: list[dict[str, Any]] = [
        {
            "name": "WAYLAY_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        },
        {"name": "WAYLAY_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "WAYLAY_AGENT_IMAGE", "value": opts.agent_image},
        {"name": "WAYLAY_POLICY", "value": opts.policy},
        {"name": "WAYLAY_WEBHOOK_PORT", "value": str(WEBHOOK_PORT)},
        {"name": "WAYLAY_AGENT_PORT", "value": str(AGENT_API_PORT)},
        {"name": "WAYLAY_CLIENT_PORT", "value": str(CLIENT_API_PORT)},
        {
            "name": "WAYLAY_TLS_CERT",
            "valueFrom": {"secretKeyRef": {"name": TLS_SECRET, "key": "tls.crt"}},
        },
        {
            "name": "WAYLAY_TLS_KEY",
            "valueFrom": {"secretKeyRef": {"name": TLS_SECRET, "key": "tls.key"}},
        },
    ]
    service_ports: list[dict[str, Any]] = [
        {
            "name": "https-webhook",
            "port": WEBHOOK_PORT,
            "targetPort": WEBHOOK_PORT,
            "protocol": "TCP",
        },
        {
            "name": "agent-api",
            "port": AGENT_API_PORT,
            "targetPort": AGENT_API_PORT,
            "protocol": "TCP",
        },
    ]
    container_ports: list[dict[str, Any]] = [
        {"name": "https-webhook", "containerPort": WEBHOOK_PORT},
        {"name": "agent-api", "containerPort": AGENT_API_PORT},
    ]
    preview = _preview_ingress(opts)
    if preview:
        env += _preview_env(opts, preview[0])
        service_ports.append(preview_service_port(PREVIEW_PORT))
        container_ports.append({"name": "preview", "containerPort": PREVIEW_PORT})
    cert_hash = hashlib.sha256(tls.cert_pem.encode()).hexdigest()[:16]
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": _meta(ns),
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(MANAGER, ns)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta(MANAGER),
            "rules": manager_rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta(MANAGER),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": MANAGER,
            },
            "subjects": subject,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(MANAGER, ns),
            "rules": [
                _rule([""], ["configmaps"], ["get", "patch"], resourceNames=[SETTINGS_CONFIGMAP]),
                _rule([""], ["secrets"], ["get", "patch"], resourceNames=[APIKEYS_SECRET]),
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(MANAGER, ns),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": MANAGER},
            "subjects": subject,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta(DEVELOPER_ROLE),
            "rules": developer_rules,
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(TLS_SECRET, ns),
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": _b64(tls.cert_pem),
                "tls.key": _b64(tls.key_pem),
                "ca.crt": _b64(tls.ca_pem),
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(SETTINGS_CONFIGMAP, ns),
            "data": {"mode": "team" if opts.team else "single-user"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(APIKEYS_SECRET, ns),
            "type": "Opaque",
            "data": {},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(MANAGER, ns),
            "spec": {
                "selector": selector,
                "ports": service_ports,
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(MANAGER, ns),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {
                        "labels": {**selector, **MANAGED},
                        "annotations": {"waylay.dev/tls-hash": cert_hash},
                    },
                    "spec": {
                        "serviceAccountName": MANAGER,
                        "containers": [
                            {
                                "name": "manager",
                                "image": opts.manager_image,
                                "command": ["python", "-m", "webhook"],
                                "env": env,
                                "ports": container_ports,
                                "readinessProbe": {
                                    "httpGet": {
                                        "path": "/healthz",
                                        "port": WEBHOOK_PORT,
                                        "scheme": "HTTPS",
                                    },
                                    "periodSeconds": 2,
                                },
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "64Mi"},
                                    "limits": {"cpu": "1", "memory": "256Mi"},
                                },
                                "securityContext": RESTRICTED,
                            }
                        ],
                    },
                },
            },
        },
        *preview,
        webhook_configuration(opts, tls),
    ]


def _preview_ingress(opts: InstallOptions) -> list[dict[str, Any]]:
    """The Ingress for ``*.D`` when there is a preview domain (raises on a bad one)."""
    if not opts.preview_domain:
        return []
    ingress = preview_ingress_manifest(
        opts.preview_domain,
        namespace=opts.namespace,
        service=MANAGER,
        port=PREVIEW_PORT,
        tls_secret=opts.preview_tls_secret or None,
        ingress_class=opts.preview_ingress_class or None,
        labels=MANAGED,
    )
    return [ingress]


def _preview_env(opts: InstallOptions, ingress: dict[str, Any]) -> list[dict[str, Any]]:
    """The manager's preview router settings (``webhook.config``)."""
    domain = ingress["metadata"]["annotations"]["waylay.dev/preview-domain"]
    scheme = "https" if opts.preview_tls_secret else "http"
    return [
        {"name": "WAYLAY_PREVIEW_DOMAIN", "value": domain},
        {"name": "WAYLAY_PREVIEW_PORT", "value": str(PREVIEW_PORT)},
        {"name": "WAYLAY_PREVIEW_SCHEME", "value": scheme},
    ]


def webhook_configuration(opts: InstallOptions, tls: Tls) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": _meta(WEBHOOK_CONFIG),
        "webhooks": [
            {
                "name": "agent-injector.waylay.dev",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Ignore",
                "timeoutSeconds": 5,
                "reinvocationPolicy": "IfNeeded",
                "clientConfig": {
                    "service": {
                        "name": MANAGER,
                        "namespace": opts.namespace,
                        "path": "/mutate",
                        "port": WEBHOOK_PORT,
                    },
                    "caBundle": _b64(tls.ca_pem),
                },
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "NotIn",
                            "values": sorted({"kube-system", opts.namespace}),
                        }
                    ]
                },
            }
        ],
    }


def render_yaml(opts: InstallOptions, tls: Tls | None = None) -> str:
    """``waylay install --dry-run -o yaml``."""
    return yaml.safe_dump_all(manifests(opts, tls or new_tls(opts.namespace)), sort_keys=False)


# ------------------------------------------------------------------- install


def _ns(obj: dict[str, Any]) -> str | None:
    ns = obj["metadata"].get("namespace")
    return str(ns) if ns else None


def _existing_tls(kube: Kube, namespace: str) -> Tls | None:
    secret = kube.get("v1", "Secret", TLS_SECRET, namespace)
    data = (secret or {}).get("data") or {}
    try:
        return Tls(*(base64.b64decode(data[k]).decode() for k in ("ca.crt", "tls.crt", "tls.key")))
    except (KeyError, ValueError):
        return None


def _upsert(kube: Kube, obj: dict[str, Any]) -> str:
    """Create, or update in place keeping what the server owns; returns what happened."""
    api, kind, name, ns = obj["apiVersion"], obj["kind"], obj["metadata"]["name"], _ns(obj)
    current = kube.get(api, kind, name, ns)
    if current is None:
        kube.create(api, kind, obj, ns)
        return "created"
    body = json.loads(json.dumps(obj))
    body["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
    if kind == "Service":
        for key in ("clusterIP", "clusterIPs"):
            if key in (current.get("spec") or {}):
                body["spec"][key] = current["spec"][key]
    if kind == "Namespace":
        return "kept"
    kube.replace(api, kind, body, ns)
    return "updated"


def install(kube: Kube, opts: InstallOptions, progress: Progress = lambda _: None) -> InstallResult:
    ns = opts.namespace
    tls = _existing_tls(kube, ns) or new_tls(ns)
    upgraded = kube.get("apps/v1", "Deployment", MANAGER, ns) is not None
    result = InstallResult(upgraded=upgraded)

    def step(message: str) -> None:
        result.steps.append(message)
        progress(message)

    objects = manifests(opts, tls)
    webhook = objects.pop()
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        settings = kind in ("ConfigMap", "Secret") and name in (SETTINGS_CONFIGMAP, APIKEYS_SECRET)
        if settings and kube.get("v1", kind, name, ns) is not None:
            continue  # mode and keys survive upgrades
        step(f"{kind} {name}: {_upsert(kube, obj)}")
    if not opts.preview_domain and kube.delete(INGRESS_API, "Ingress", PREVIEW_INGRESS, ns):
        step(f"Ingress {PREVIEW_INGRESS}: deleted (no preview domain any more)")
    if opts.team:
        result.admin_key = _enable_team(kube, ns)
        step("team mode on" + (", admin key issued" if result.admin_key else ""))
    step("waiting for the manager")
    _wait_for_manager(kube, opts)
    step(f"{webhook['kind']} {WEBHOOK_CONFIG}: {_upsert(kube, webhook)}")
    result.proof_namespace = prove_webhook(kube, opts)
    step(f"webhook proven with a dry-run pod in {result.proof_namespace}")
    return result


def _enable_team(kube: Kube, ns: str) -> str | None:
    """Team mode on; the first admin key when there is none yet."""
    kube.patch("v1", "ConfigMap", SETTINGS_CONFIGMAP, {"data": {"mode": "team"}}, ns)
    settings = settings_from_objects(None, kube.get("v1", "Secret", APIKEYS_SECRET, ns))
    if any(k.admin for k in settings.keys.values()):
        return None
    plaintext, record = issue_key("admin", admin=True)
    patch = {"data": {record.id: record.secret_entry()}}
    kube.patch("v1", "Secret", APIKEYS_SECRET, patch, ns)
    return plaintext


def _wait_for_manager(kube: Kube, opts: InstallOptions) -> None:
    deadline = time.monotonic() + opts.timeout
    while True:
        dep = kube.get("apps/v1", "Deployment", MANAGER, opts.namespace) or {}
        status, spec = dep.get("status") or {}, dep.get("spec") or {}
        want = int(spec.get("replicas", 1))
        if (
            status.get("observedGeneration", 0) >= (dep.get("metadata") or {}).get("generation", 1)
            and status.get("updatedReplicas", 0) >= want
            and status.get("availableReplicas", 0) >= want
            and status.get("replicas", 0) == want
        ):
            return
        if time.monotonic() > deadline:
            raise InstallFailed(
                "The traffic manager did not become ready",
                f"`kubectl -n {opts.namespace} describe pods -l app.kubernetes.io/name={MANAGER}` "
                "and its logs say more",
                detail=_manager_pod_problems(kube, opts.namespace)
                or f"{status.get('availableReplicas', 0)}/{want} available after {opts.timeout:g}s",
            )
        time.sleep(0.5)


def _manager_pod_problems(kube: Kube, ns: str) -> str:
    pods, _ = kube.list("v1", "Pod", ns, label_selector=f"app.kubernetes.io/name={MANAGER}")
    out: list[str] = []
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting:
                name = pod["metadata"]["name"]
                out.append(f"{name}: {waiting.get('reason')}: {waiting.get('message', '')}")
    return "; ".join(out)


def proof_pod(opts: InstallOptions, namespace: str) -> dict[str, Any]:
    """A pod the webhook must inject: annotated, owned by a (nonexistent) ReplicaSet."""
    port = TakeoverPort(
        service="proof",
        service_port=80,
        target_port_name="http",
        app_container="app",
        app_port=8080,
        agent_port=9900,
    )
    config = AgentConfig(
        workload_kind="ReplicaSet",
        workload_name="waylay-webhook-proof",
        namespace=namespace,
        manager_address="proof:0",
        ports=[port],
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": PROOF_PREFIX,
            "namespace": namespace,
            "annotations": {AGENT_CONFIG_ANNOTATION: config.model_dump_json()},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "waylay-webhook-proof",
                    "uid": "00000000-0000-4000-8000-000000000000",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": opts.agent_image,
                    "ports": [{"name": "http", "containerPort": 8080}],
                }
            ]
        },
    }


def prove_webhook(kube: Kube, opts: InstallOptions, *, within: float = 20.0) -> str:
    """Dry-run a pod that must come back injected; returns the namespace used.

    Raises InstallFailed when the API server does not call the webhook or the
    webhook does not inject (retried for ``within`` seconds while endpoints
    settle).
    """
    namespaces, _ = kube.list("v1", "Namespace")
    names = [n["metadata"]["name"] for n in namespaces]
    usable = [
        n
        for n in ["default", *sorted(names)]
        if n in names and n not in ("kube-system", opts.namespace)
    ]
    if not usable:
        raise InstallFailed(
            "No namespace to prove the webhook in",
            "create one (`kubectl create namespace default`) and run `waylay install` again",
        )
    target = str(usable[0])
    path = f"/api/v1/namespaces/{target}/pods"
    deadline = time.monotonic() + within
    last = ""
    while True:
        answer = (
            kube.request(
                "POST",
                path,
                query=[("dryRun", "All")],
                body=proof_pod(opts, target),
                verb="create",
                resource="pods",
                namespace=target,
            )
            or {}
        )
        containers = [c.get("name") for c in (answer.get("spec") or {}).get("containers") or []]
        if AGENT_CONTAINER in containers:
            return target
        last = f"the dry-run pod came back with containers {containers}"
        if time.monotonic() > deadline:
            raise InstallFailed(
                "The agent-injector webhook does not work",
                "pods will not get agents. Check that the API server can reach "
                f"service {MANAGER}.{opts.namespace}:{WEBHOOK_PORT} (network policies, "
                "firewalls between the control plane and nodes), and the manager's log: "
                f"`kubectl -n {opts.namespace} logs deploy/{MANAGER}`",
                detail=f"{last} (no {AGENT_CONTAINER}) after {within:g}s",
            )
        time.sleep(0.5)


# ----------------------------------------------------------------- uninstall


def _annotation(obj: dict[str, Any], key: str) -> str | None:
    ann = ((obj.get("spec") or {}).get("template") or {}).get("metadata", {}).get(
        "annotations"
    ) or {}
    value = ann.get(key)
    return str(value) if value is not None else None


def _has_agent(pod: dict[str, Any]) -> bool:
    return any(
        c.get("name") == AGENT_CONTAINER for c in (pod.get("spec") or {}).get("containers") or []
    )


def _controller_kind(obj: dict[str, Any]) -> str | None:
    for o in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if o.get("controller"):
            return str(o.get("kind"))
    return None


def remove_agents(kube: Kube, progress: Progress, timeout: float) -> None:
    """Take the agent out of every workload and restore every Service."""
    replace_pods: list[tuple[str, dict[str, Any]]] = []
    for kind in ("Deployment", "StatefulSet", "ReplicaSet"):
        items, _ = kube.list("apps/v1", kind)
        for obj in items:
            if _annotation(obj, AGENT_CONFIG_ANNOTATION) is None:
                continue
            if kind == "ReplicaSet" and _controller_kind(obj) == "Deployment":
                continue  # its Deployment rolls it
            meta = obj["metadata"]
            kube.patch(
                "apps/v1",
                kind,
                meta["name"],
                _drop_config(obj),
                meta["namespace"],
                patch_type="json",
            )
            progress(f"{kind} {meta['namespace']}/{meta['name']}: agent removed from its template")
            strategy = ((obj.get("spec") or {}).get("updateStrategy") or {}).get("type")
            if kind == "ReplicaSet" or strategy == "OnDelete":
                replace_pods.append((kind, obj))
    for svc in kube.list("v1", "Service")[0]:
        raw = ((svc.get("metadata") or {}).get("annotations") or {}).get(
            TARGET_PORT_UNDO_ANNOTATION
        )
        if raw is not None:
            _restore_service(kube, svc, raw)
            progress(f"Service {svc['metadata']['namespace']}/{svc['metadata']['name']}: restored")
    for _, obj in replace_pods:
        labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        sel = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        pods, _ = kube.list("v1", "Pod", obj["metadata"]["namespace"], label_selector=sel)
        for pod in pods:
            if _has_agent(pod):
                kube.delete("v1", "Pod", pod["metadata"]["name"], pod["metadata"]["namespace"])
    _wait_agents_gone(kube, timeout)
    _delete_stale_replicasets(kube, progress)


def _drop_config(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """A JSON patch taking the agent config off the template, leaving no empty map behind.

    An empty ``annotations: {}`` would change the pod-template hash, and the
    Deployment would make a new ReplicaSet instead of going back to its old one.
    """
    path = "/spec/template/metadata/annotations"
    current = obj["spec"]["template"]["metadata"]["annotations"]
    test = {"op": "test", "path": path, "value": current}
    if set(current) == {AGENT_CONFIG_ANNOTATION}:
        return [test, {"op": "remove", "path": path}]
    return [test, {"op": "remove", "path": f"{path}/{AGENT_CONFIG_ANNOTATION.replace('/', '~1')}"}]


def _restore_service(kube: Kube, svc: dict[str, Any], raw: str) -> None:
    try:
        undo = json.loads(raw)
    except ValueError:
        undo = {}
    ports = [dict(p) for p in (svc.get("spec") or {}).get("ports") or []]
    for p in ports:
        key = f"{p.get('port')}/{p.get('protocol', 'TCP')}"
        if key in undo:
            p["targetPort"] = undo[key]
    annotations = svc["metadata"]["annotations"]
    path = "/metadata/annotations"
    if set(annotations) != {TARGET_PORT_UNDO_ANNOTATION}:
        path += "/" + TARGET_PORT_UNDO_ANNOTATION.replace("/", "~1")
    patch = [
        {"op": "test", "path": "/metadata/annotations", "value": annotations},
        {"op": "remove", "path": path},  # no empty map left behind
        {"op": "replace", "path": "/spec/ports", "value": ports},
    ]
    meta = svc["metadata"]
    kube.patch("v1", "Service", meta["name"], patch, meta["namespace"], patch_type="json")


def _wait_agents_gone(kube: Kube, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pods, _ = kube.list("v1", "Pod")
        left = [
            f"{p['metadata']['namespace']}/{p['metadata']['name']}"
            for p in pods
            if _has_agent(p) and not p["metadata"].get("name", "").startswith(PROOF_PREFIX)
        ]
        if not left:
            return
        for pod in pods:
            if _has_agent(pod) and not _ready(pod) and not pod["metadata"].get("deletionTimestamp"):
                # Broken anyway (a crash loop, an image that can't be pulled): a
                # rollout would wait for it forever, and it serves nothing.
                kube.delete("v1", "Pod", pod["metadata"]["name"], pod["metadata"]["namespace"])
        if time.monotonic() > deadline:
            raise InstallFailed(
                "Agents are still running",
                "their workloads did not roll; check `kubectl rollout status` for them, "
                "then run `waylay uninstall` again",
                detail="pods with agents: " + ", ".join(left[:10]),
            )
        time.sleep(0.5)


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _delete_stale_replicasets(kube: Kube, progress: Progress) -> None:
    """The scaled-down ReplicaSets that carried agents (a Deployment's history)."""
    items, _ = kube.list("apps/v1", "ReplicaSet")
    for rs in items:
        if (
            _controller_kind(rs) == "Deployment"
            and _annotation(rs, AGENT_CONFIG_ANNOTATION) is not None
            and int((rs.get("spec") or {}).get("replicas", 0)) == 0
        ):
            meta = rs["metadata"]
            kube.delete("apps/v1", "ReplicaSet", meta["name"], meta["namespace"])
            progress(f"ReplicaSet {meta['namespace']}/{meta['name']}: deleted (carried agents)")


def uninstall(kube: Kube, opts: InstallOptions, progress: Progress = lambda _: None) -> None:
    ns = opts.namespace
    if kube.delete(
        "admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", WEBHOOK_CONFIG
    ):
        progress(f"MutatingWebhookConfiguration {WEBHOOK_CONFIG}: deleted")
    remove_agents(kube, progress, opts.timeout)
    if kube.delete(INGRESS_API, "Ingress", PREVIEW_INGRESS, ns):
        progress(f"Ingress {PREVIEW_INGRESS}: deleted")
    for obj in reversed(manifests(opts, Tls("", "", ""))[:-1]):
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in ("Namespace", "Ingress"):
            continue
        if kube.delete(obj["apiVersion"], kind, name, _ns(obj)):
            progress(f"{kind} {name}: deleted")
    namespace = kube.get("v1", "Namespace", ns)
    labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    if namespace is not None and labels.get("app.kubernetes.io/managed-by") == "waylay":
        kube.delete("v1", "Namespace", ns)
        deadline = time.monotonic() + opts.timeout
        while kube.get("v1", "Namespace", ns) is not None:
            if time.monotonic() > deadline:
                raise InstallFailed(
                    f"Namespace {ns} is still terminating",
                    f"`kubectl get all -n {ns}` shows what holds it",
                )
            time.sleep(0.5)
        progress(f"Namespace {ns}: deleted")
