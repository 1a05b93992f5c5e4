"""sandbox.webhook_routing: how a webhook's Service reference is dialled.

Covers: ``endpoints`` routing reaches the webhook at a ready endpoint of the
Service (port 443 mapped to the real target port) over real HTTPS verified as
``hook.waylay.svc``; ``cluster-ip`` routing dials clusterIP:port; ``auto``
routes a headless Service to its endpoints; a Service without ready
endpoints, or without the referenced port, is a "failed calling webhook" 500;
``proxy_can_bind`` allows unprivileged ports.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from sandbox.admission import MutatingAdmission
from sandbox.admission_call import ServiceReference
from sandbox.auth import DEVELOPER
from sandbox.errors import ApiError
from sandbox.store import Store
from sandbox.webhook_routing import ServiceRouter, proxy_can_bind
from tests.sandbox_security.webhook_server import WebhookServer

HOOKS = "mutatingwebhookconfigurations.admissionregistration.k8s.io"


def _store(webhook: WebhookServer, *, cluster_ip: str, ready: bool = True) -> Store:
    store = Store()
    store.put("namespaces", {"metadata": {"name": "shop"}})
    store.put(
        "services",
        {
            "metadata": {"name": "hook", "namespace": "waylay"},
            "spec": {
                "clusterIP": cluster_ip,
                "ports": [{"name": "https", "port": 443, "targetPort": webhook.port}],
            },
        },
    )
    address = [{"ip": "127.0.0.1"}]
    subset = {
        "addresses" if ready else "notReadyAddresses": address,
        "ports": [{"name": "https", "port": webhook.port}],
    }
    store.put(
        "endpoints", {"metadata": {"name": "hook", "namespace": "waylay"}, "subsets": [subset]}
    )
    store.put(
        HOOKS,
        {
            "metadata": {"name": "w"},
            "webhooks": [
                {
                    "name": "inject.waylay.dev",
                    "clientConfig": {
                        "service": {"namespace": "waylay", "name": "hook", "path": "/inject"},
                        "caBundle": base64.b64encode(webhook.ca.cert_pem).decode(),
                    },
                    "rules": [
                        {
                            "operations": ["CREATE"],
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "resources": ["pods"],
                        }
                    ],
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 5,
                }
            ],
        },
    )
    return store


def _pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"containers": [{"name": "app", "image": "demo/app"}]},
    }


async def _admit(admission: MutatingAdmission) -> dict[str, Any]:
    return await admission.admit(
        operation="CREATE",
        resource="pods",
        obj=_pod(),
        old=None,
        namespace="shop",
        user=DEVELOPER,
        dry_run=False,
    )


async def test_endpoint_routing_reaches_the_pod(webhook: WebhookServer) -> None:
    # Nothing listens on 127.0.0.9:443: only the endpoint can answer.
    store = _store(webhook, cluster_ip="127.0.0.9")
    out = await _admit(MutatingAdmission(store, routing="endpoints"))
    assert [c["name"] for c in out["spec"]["containers"]] == ["app", "waylay-agent"]
    assert len(webhook.requests("/inject")) == 1


async def test_cluster_ip_routing_dials_the_cluster_ip(webhook: WebhookServer) -> None:
    store = _store(webhook, cluster_ip="127.0.0.9")
    router = ServiceRouter(store, "cluster-ip")
    assert router(ServiceReference(namespace="waylay", name="hook", port=443)) == (
        "127.0.0.9",
        443,
    )
    with pytest.raises(ApiError) as err:
        await _admit(MutatingAdmission(store, routing="cluster-ip"))
    assert err.value.code == 500
    assert 'Post "https://hook.waylay.svc:443/inject?timeout=5s"' in err.value.message


async def test_auto_routes_headless_service_to_endpoints(webhook: WebhookServer) -> None:
    store = _store(webhook, cluster_ip="None")
    router = ServiceRouter(store, "auto")
    ref = ServiceReference(namespace="waylay", name="hook", port=443)
    assert router(ref) == ("127.0.0.1", webhook.port)


async def test_no_ready_endpoints_or_no_such_port(webhook: WebhookServer) -> None:
    store = _store(webhook, cluster_ip="127.0.0.9", ready=False)
    with pytest.raises(ApiError) as err:
        await _admit(MutatingAdmission(store, routing="endpoints"))
    assert err.value.message == (
        'Internal error occurred: failed calling webhook "inject.waylay.dev": '
        'failed to call webhook: no endpoints available for service "hook"'
    )
    with pytest.raises(LookupError, match="has no port 8443"):
        ServiceRouter(store)(ServiceReference(namespace="waylay", name="hook", port=8443))


def test_proxy_can_bind_unprivileged_ports() -> None:
    assert proxy_can_bind(50000)
