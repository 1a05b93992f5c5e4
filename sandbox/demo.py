"""The demo cluster: what a small team's cluster looks like, in three namespaces.

- ``shop``: Deployment ``orders`` (3 replicas, named port ``http``, Service
  ``orders``); StatefulSet ``ledger`` (Service ``ledger`` with a *numeric*
  ``targetPort``, and a headless governing Service ``ledger-pods``); a bare
  ReplicaSet ``legacy-billing`` (a TCP echo and a UDP echo in one pod);
  Deployment ``catalog`` (ports ``http`` 8080 and ``metrics`` 9090) selected by
  two Services, ``catalog-stable`` and ``catalog-canary``; Ingress ``shop``.
- ``default``: Deployment ``hello`` with its Service and Ingress.
- ``ingress``: the ingress controller (Deployment ``ingress-controller``, its
  service account and RBAC) behind the LoadBalancer Service ``ingress`` (HTTP
  80, HTTPS 443 with a certificate from the sandbox's CA), and a traffic
  generator sending a few requests a second through it.

``install(cluster, ca=...)`` creates them all (existing objects are left alone);
``next_steps(...)`` is the text telling a newcomer what to try.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Any

from core.certs import CA, make_ca
from sandbox.errors import ApiError
from sandbox.kubelet_api import ClusterAPI

__all__ = ["HOSTS", "demo_objects", "install", "next_steps"]

Obj = dict[str, Any]

HOSTS = ("shop.waylay.local", "hello.waylay.local")
"""Host names the demo Ingresses route (send them as ``Host`` to the ingress address)."""

_ECHO = "waylay/demo-http-echo:1.0"


def _meta(name: str, namespace: str | None = None, **labels: str) -> Obj:
    meta: Obj = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return meta


def _probe(port: str, path: str | None = "/healthz") -> Obj:
    check: Obj = (
        {"httpGet": {"path": path, "port": port}} if path else {"tcpSocket": {"port": port}}
    )
    return {**check, "initialDelaySeconds": 1, "periodSeconds": 3}


def _echo_container(app: str, *, metrics: bool = False) -> Obj:
    ports = [{"name": "http", "containerPort": 8080}]
    env: list[Obj] = [
        {"name": "APP", "value": app},
        {"name": "PORT", "value": "8080"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    if metrics:
        ports.append({"name": "metrics", "containerPort": 9090})
        env.append({"name": "METRICS_PORT", "value": "9090"})
    return {
        "name": app,
        "image": _ECHO,
        "ports": ports,
        "env": env,
        "readinessProbe": _probe("http"),
        "livenessProbe": {**_probe("http"), "periodSeconds": 20},
    }


def _template(app: str, *containers: Obj, account: str | None = None) -> Obj:
    spec: Obj = {"containers": list(containers), "terminationGracePeriodSeconds": 5}
    if account:
        spec["serviceAccountName"] = account
    return {"metadata": {"labels": {"app": app}}, "spec": spec}


def _deployment(name: str, namespace: str, replicas: int, template: Obj) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, namespace, app=name),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": template,
        },
    }


def _service(name: str, namespace: str, app: str, *ports: Obj, **spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace, app=app),
        "spec": {"selector": {"app": app}, "ports": list(ports), **spec},
    }


def _port(name: str, port: int, target: int | str, protocol: str = "TCP") -> Obj:
    return {"name": name, "port": port, "targetPort": target, "protocol": protocol}


def _ingress_path(path: str, service: str, port: str | int) -> Obj:
    key = "number" if isinstance(port, int) else "name"
    return {
        "path": path,
        "pathType": "Prefix",
        "backend": {"service": {"name": service, "port": {key: port}}},
    }


def _shop() -> list[tuple[str, Obj]]:
    ns = "shop"
    billing = _template(
        "legacy-billing",
        {
            "name": "billing",
            "image": "waylay/demo-tcp-echo:1.0",
            "ports": [{"name": "tcp", "containerPort": 9000}],
            "env": [{"name": "PORT", "value": "9000"}, {"name": "GREETING", "value": "1"}],
            "readinessProbe": _probe("tcp", None),
        },
        {
            "name": "audit",
            "image": "waylay/demo-udp-echo:1.0",
            "ports": [{"name": "audit", "containerPort": 9001, "protocol": "UDP"}],
            "env": [{"name": "PORT", "value": "9001"}],
        },
    )
    return [
        ("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns)}),
        ("services", _service("orders", ns, "orders", _port("http", 80, "http"))),
        ("services", _service("ledger", ns, "ledger", _port("http", 80, 8080))),
        (
            "services",
            _service("ledger-pods", ns, "ledger", _port("http", 8080, 8080), clusterIP="None"),
        ),
        (
            "services",
            _service(
                "legacy-billing",
                ns,
                "legacy-billing",
                _port("tcp", 9000, "tcp"),
                _port("audit", 9001, "audit", "UDP"),
            ),
        ),
        *(
            (
                "services",
                _service(
                    name,
                    ns,
                    "catalog",
                    _port("http", 80, "http"),
                    _port("metrics", 9090, "metrics"),
                ),
            )
            for name in ("catalog-stable", "catalog-canary")
        ),
        (
            "deployments.apps",
            _deployment("orders", ns, 3, _template("orders", _echo_container("orders"))),
        ),
        (
            "deployments.apps",
            _deployment(
                "catalog", ns, 2, _template("catalog", _echo_container("catalog", metrics=True))
            ),
        ),
        (
            "statefulsets.apps",
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": _meta("ledger", ns, app="ledger"),
                "spec": {
                    "replicas": 2,
                    "serviceName": "ledger-pods",
                    "selector": {"matchLabels": {"app": "ledger"}},
                    "template": _template("ledger", _echo_container("ledger")),
                },
            },
        ),
        (
            "replicasets.apps",
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": _meta("legacy-billing", ns, app="legacy-billing"),
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "legacy-billing"}},
                    "template": billing,
                },
            },
        ),
    ]


def _hello() -> list[tuple[str, Obj]]:
    ns = "default"
    return [
        ("services", _service("hello", ns, "hello", _port("http", 80, "http"))),
        (
            "deployments.apps",
            _deployment("hello", ns, 1, _template("hello", _echo_container("hello"))),
        ),
    ]


def _ingress_controller(ca: CA) -> list[tuple[str, Obj]]:
    ns, account = "ingress", "ingress-controller"
    cert, key = ca.issue_server_cert(list(HOSTS))
    tls_secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": _meta("shop-tls", "shop"),
        "data": {
            "tls.crt": base64.b64encode(cert + ca.cert_pem).decode(),
            "tls.key": base64.b64encode(key).decode(),
        },
    }
    rbac = "rbac.authorization.k8s.io"
    controller = _template(
        "ingress-controller",
        {
            "name": "controller",
            "image": "waylay/demo-ingress:1.0",
            "ports": [
                {"name": "http", "containerPort": 8080},
                {"name": "https", "containerPort": 8443},
            ],
            "env": [{"name": "PUBLISH_SERVICE", "value": "ingress/ingress"}],
            "readinessProbe": _probe("http", None),
        },
        account=account,
    )
    hosts = ",".join(
        [f"{HOSTS[0]}/orders", f"{HOSTS[0]}/catalog", f"{HOSTS[0]}/ledger", f"{HOSTS[1]}/"]
    )
    traffic = _template(
        "traffic",
        {
            "name": "traffic",
            "image": "waylay/demo-traffic:1.0",
            "env": [
                # Service links: the ingress Service's address, as a real pod would see it.
                {
                    "name": "TARGET",
                    "value": "http://$(INGRESS_SERVICE_HOST):$(INGRESS_SERVICE_PORT_HTTP)",
                },
                {"name": "HOSTS", "value": hosts},
                {"name": "RATE", "value": "2"},
            ],
        },
    )
    return [
        ("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns)}),
        (
            "serviceaccounts",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(account, ns)},
        ),
        (
            f"clusterroles.{rbac}",
            {
                "apiVersion": f"{rbac}/v1",
                "kind": "ClusterRole",
                "metadata": _meta("waylay-demo:ingress-controller"),
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["services", "secrets", "endpoints"],
                        "verbs": ["get", "list", "watch"],
                    },
                    {
                        "apiGroups": ["networking.k8s.io"],
                        "resources": ["ingresses"],
                        "verbs": ["get", "list", "watch"],
                    },
                    {
                        "apiGroups": ["networking.k8s.io"],
                        "resources": ["ingresses/status"],
                        "verbs": ["get", "update", "patch"],
                    },
                ],
            },
        ),
        (
            f"clusterrolebindings.{rbac}",
            {
                "apiVersion": f"{rbac}/v1",
                "kind": "ClusterRoleBinding",
                "metadata": _meta("waylay-demo:ingress-controller"),
                "roleRef": {
                    "apiGroup": rbac,
                    "kind": "ClusterRole",
                    "name": "waylay-demo:ingress-controller",
                },
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}],
            },
        ),
        ("secrets", tls_secret),
        (
            "services",
            _service(
                "ingress",
                ns,
                "ingress-controller",
                _port("http", 80, "http"),
                _port("https", 443, "https"),
                type="LoadBalancer",
            ),
        ),
        ("deployments.apps", _deployment("ingress-controller", ns, 1, controller)),
        (
            "ingresses.networking.k8s.io",
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": _meta("shop", "shop"),
                "spec": {
                    "tls": [{"hosts": [HOSTS[0]], "secretName": "shop-tls"}],
                    "defaultBackend": {"service": {"name": "orders", "port": {"name": "http"}}},
                    "rules": [
                        {
                            "host": HOSTS[0],
                            "http": {
                                "paths": [
                                    _ingress_path("/orders", "orders", "http"),
                                    _ingress_path("/catalog", "catalog-stable", "http"),
                                    _ingress_path("/ledger", "ledger", 80),
                                ]
                            },
                        }
                    ],
                },
            },
        ),
        (
            "ingresses.networking.k8s.io",
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": _meta("hello", "default"),
                "spec": {
                    "rules": [
                        {"host": HOSTS[1], "http": {"paths": [_ingress_path("/", "hello", "http")]}}
                    ]
                },
            },
        ),
        ("deployments.apps", _deployment("traffic", ns, 1, traffic)),
    ]


def demo_objects(ca: CA) -> list[tuple[str, Obj]]:
    """``(resource key, object)`` for the whole demo, in creation order."""
    return [*_shop(), *_hello(), *_ingress_controller(ca)]


async def install(cluster: ClusterAPI, *, ca: CA | None = None) -> list[Obj]:
    """Create the demo objects; ``ca`` (the sandbox's) signs the ingress certificate.

    Objects that already exist are left as they are, so installing twice is safe.
    """
    created = []
    for resource, obj in demo_objects(ca or make_ca("waylay-demo-ca")):
        try:
            created.append(await cluster.create(resource, obj))
        except ApiError as exc:
            if exc.code != 409:
                raise
    return created


def _ingress_address(cluster: ClusterAPI) -> str | None:
    service = cluster.store.get("services", "ingress", "ingress") or {}
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return str(ingress[0]["ip"]) if ingress and ingress[0].get("ip") else None


def _node_ports(cluster: ClusterAPI) -> list[int]:
    service = cluster.store.get("services", "ingress", "ingress") or {}
    ports = (service.get("spec") or {}).get("ports") or []
    found = [int(p["nodePort"]) for p in ports if p.get("nodePort")]
    return found if len(found) == 2 else []


def _unbound(cluster: ClusterAPI) -> bool:
    """Did the Service proxy fail to bind the ingress's ports (no privileges)?"""
    return any(
        event.get("reason") == "FailedToBind"
        and (event.get("involvedObject") or {}).get("name") == "ingress"
        for event in cluster.store.list("events", "ingress")
    )


async def next_steps(
    cluster: ClusterAPI, *, kubeconfig: str, ca_file: str, timeout: float = 10
) -> str:
    """What to try once the demo is installed (waits for the ingress's address)."""
    address = _ingress_address(cluster)
    if address is None:
        assigned = asyncio.Event()

        def watch(event: str, resource: str, obj: Obj) -> None:
            if resource == "services" and _ingress_address(cluster):
                assigned.set()

        cluster.subscribe(watch)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(assigned.wait(), timeout)
        finally:
            unsubscribe = getattr(cluster, "unsubscribe", None)
            if unsubscribe is not None:
                unsubscribe(watch)
        address = _ingress_address(cluster) or "<pending: kubectl get svc -n ingress ingress>"
    shop = HOSTS[0]
    http, https = address, f"{shop}:443:{address}"
    ports = _node_ports(cluster)
    if _unbound(cluster) and ports:  # ports 80/443 need privileges: use the node ports
        http, https = f"{address}:{ports[0]}", f"{shop}:{ports[1]}:{address}"
        shop = f"{shop}:{ports[1]}"
    return "\n".join(
        [
            "The demo cluster is up: namespaces shop, default and ingress.",
            f"  export KUBECONFIG={kubeconfig}",
            "  kubectl get pods -A",
            f"  curl http://{http}/                          # an orders reply",
            f"  curl -H 'Host: {HOSTS[0]}' http://{http}/catalog",
            f"  curl --cacert {ca_file} --resolve {https} https://{shop}/ledger",
            "  kubectl logs -n ingress deploy/traffic -f        # the traffic generator",
        ]
    )
