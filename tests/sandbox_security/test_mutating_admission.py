"""sandbox.admission: mutating webhooks called over real HTTPS.

Covers: a webhook reached through its Service (clusterIP:port, TLS name
NAME.NAMESPACE.svc, verified against caBundle) injects a container with a
base64 JSONPatch; the AdmissionReview request carries uid, kind, resource,
requestKind, namespace, operation, userInfo, object, oldObject, dryRun,
options, and an empty name for generateName pods; `url` clientConfig; rules
(operations, apiGroups, resources vs subresources, `pods/*`, scope);
namespaceSelector against namespace labels; objectSelector against new and old
labels; timeoutSeconds with failurePolicy Ignore (object unchanged) vs Fail
(500 "failed calling webhook ... context deadline exceeded"); a response uid
mismatch; a caBundle that does not sign the server cert; a missing Service;
a denial with the webhook's code and message; HTTP errors and non-AdmissionReview
answers under Fail and Ignore; a Namespace matched by its own labels and other
cluster-scoped objects never exempted by namespaceSelector; dry run refused for webhooks
with side effects; reinvocationPolicy IfNeeded re-runs an earlier webhook once
after a later one changed the object, Never does not; configurations are
called in name order.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.certs import make_ca
from sandbox.admission import MutatingAdmission
from sandbox.auth import DEVELOPER
from sandbox.errors import ApiError
from sandbox.store import Store
from tests.sandbox_security.webhook_server import WebhookServer, hook

HOOKS = "mutatingwebhookconfigurations.admissionregistration.k8s.io"


@pytest.fixture
def store(webhook: WebhookServer) -> Store:
    s = Store()
    s.put("namespaces", {"metadata": {"name": "shop", "labels": {"inject": "on"}}})
    s.put("namespaces", {"metadata": {"name": "quiet", "labels": {}}})
    s.put(
        "services",
        {
            "metadata": {"name": "hook", "namespace": "waylay"},
            "spec": {"clusterIP": "127.0.0.1", "ports": [{"port": webhook.port}]},
        },
    )
    return s


def configure(store: Store, name: str, *hooks: dict[str, Any]) -> None:
    store.put(HOOKS, {"metadata": {"name": name}, "webhooks": list(hooks)})


def pod(
    name: str = "web-1", *, generate: bool = False, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": "shop", "labels": labels or {"app": "web"}}
    if generate:
        meta["generateName"] = "web-"
    else:
        meta["name"] = name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "app", "image": "demo/app"}]},
    }


async def admit(
    store: Store,
    obj: dict[str, Any],
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    namespace: str | None = "shop",
    resource: str = "pods",
    dry_run: bool = False,
    subresource: str = "",
) -> dict[str, Any]:
    return await MutatingAdmission(store).admit(
        operation=operation,
        resource=resource,
        obj=obj,
        old=old,
        namespace=namespace,
        user=DEVELOPER,
        dry_run=dry_run,
        subresource=subresource,
    )


async def test_injects_container_through_service(store: Store, webhook: WebhookServer) -> None:
    configure(store, "waylay", hook(webhook, "inject.waylay.dev", "/inject"))
    out = await admit(store, pod(generate=True))
    assert [c["name"] for c in out["spec"]["containers"]] == ["app", "waylay-agent"]
    [req] = webhook.requests("/inject")
    assert req["name"] == ""  # generateName: admission runs before the name exists
    assert req["namespace"] == "shop"
    assert req["operation"] == "CREATE"
    assert req["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert req["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert req["requestKind"] == req["kind"]
    assert req["userInfo"] == {"username": "developer", "groups": ["system:authenticated"]}
    assert req["object"]["metadata"]["generateName"] == "web-"
    assert req["oldObject"] is None
    assert req["dryRun"] is False
    assert req["options"] == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
    assert len(req["uid"]) >= 32


async def test_url_client_config_and_update_review(store: Store, webhook: WebhookServer) -> None:
    rules = [
        {
            "operations": ["UPDATE"],
            "apiGroups": ["apps"],
            "apiVersions": ["v1"],
            "resources": ["deployments"],
        }
    ]
    configure(store, "w", hook(webhook, "echo.waylay.dev", "/echo", rules=rules, url=True))
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
    }
    await admit(store, deploy, operation="UPDATE", old=deploy, resource="deployments.apps")
    [req] = webhook.requests("/echo")
    assert req["name"] == "web"
    assert req["oldObject"] == deploy
    assert req["options"]["kind"] == "UpdateOptions"
    assert req["resource"] == {"group": "apps", "version": "v1", "resource": "deployments"}
    # CREATE does not match an UPDATE-only rule; pods do not match a deployments rule.
    await admit(store, deploy, resource="deployments.apps")
    await admit(store, pod(), operation="UPDATE", old=pod())
    assert len(webhook.requests("/echo")) == 1


@pytest.mark.parametrize(
    ("resources", "subresource", "called"),
    [
        (["pods"], "status", False),
        (["pods/*"], "status", True),
        (["pods/*"], "", True),
        (["*/status"], "status", True),
        (["*"], "status", False),
    ],
)
async def test_rules_and_subresources(
    store: Store, webhook: WebhookServer, resources: list[str], subresource: str, called: bool
) -> None:
    rules = [
        {"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": resources}
    ]
    configure(store, "w", hook(webhook, "echo.waylay.dev", "/echo", rules=rules))
    await admit(store, pod(), operation="UPDATE", old=pod(), subresource=subresource)
    assert len(webhook.requests("/echo")) == (1 if called else 0)


async def test_scope(store: Store, webhook: WebhookServer) -> None:
    rules = [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["*"],
            "scope": "Namespaced",
        }
    ]
    configure(store, "w", hook(webhook, "echo.waylay.dev", "/echo", rules=rules))
    await admit(store, {"metadata": {"name": "n"}}, resource="namespaces", namespace=None)
    assert webhook.requests("/echo") == []
    await admit(store, pod())
    assert len(webhook.requests("/echo")) == 1


async def test_namespace_selector(store: Store, webhook: WebhookServer) -> None:
    configure(
        store,
        "w",
        hook(
            webhook,
            "inject.waylay.dev",
            "/inject",
            namespaceSelector={"matchLabels": {"inject": "on"}},
        ),
    )
    quiet = pod()
    quiet["metadata"]["namespace"] = "quiet"
    assert await admit(store, quiet, namespace="quiet") == quiet
    out = await admit(store, pod())
    assert len(out["spec"]["containers"]) == 2
    with pytest.raises(ApiError) as err:
        await admit(store, pod(), namespace="missing")
    assert err.value.code == 404


async def test_object_selector_matches_new_or_old(store: Store, webhook: WebhookServer) -> None:
    selector = {
        "matchExpressions": [
            {"key": "waylay.dev/inject", "operator": "NotIn", "values": ["disabled"]},
            {"key": "app", "operator": "Exists"},
        ]
    }
    rules = [
        {
            "operations": ["CREATE", "UPDATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
        }
    ]
    configure(
        store, "w", hook(webhook, "echo.waylay.dev", "/echo", rules=rules, objectSelector=selector)
    )
    await admit(store, pod(labels={"app": "web", "waylay.dev/inject": "disabled"}))
    await admit(store, pod(labels={"other": "x"}))
    assert webhook.requests("/echo") == []
    await admit(
        store, pod(labels={"other": "x"}), operation="UPDATE", old=pod(labels={"app": "web"})
    )
    await admit(store, pod(labels={"app": "web"}))
    assert len(webhook.requests("/echo")) == 2


async def test_timeout_ignore_leaves_object_alone(store: Store, webhook: WebhookServer) -> None:
    configure(
        store,
        "w",
        hook(webhook, "slow.waylay.dev", "/slow", timeoutSeconds=1, failurePolicy="Ignore"),
    )
    original = pod()
    assert await admit(store, original) == original
    assert len(webhook.requests("/slow")) == 1


async def test_timeout_fail_is_internal_error(store: Store, webhook: WebhookServer) -> None:
    configure(store, "w", hook(webhook, "slow.waylay.dev", "/slow", timeoutSeconds=1))
    with pytest.raises(ApiError) as err:
        await admit(store, pod())
    assert err.value.code == 500
    assert err.value.reason == "InternalError"
    assert err.value.message == (
        'Internal error occurred: failed calling webhook "slow.waylay.dev": '
        "failed to call webhook: "
        f'Post "https://hook.waylay.svc:{webhook.port}/slow?timeout=1s": context deadline exceeded'
    )
    assert err.value.status()["details"]["causes"][0]["message"].startswith(
        "failed calling webhook"
    )


async def test_uid_mismatch(store: Store, webhook: WebhookServer) -> None:
    configure(store, "w", hook(webhook, "liar.waylay.dev", "/wrong-uid"))
    with pytest.raises(ApiError) as err:
        await admit(store, pod())
    assert err.value.code == 500
    assert (
        'failed calling webhook "liar.waylay.dev": received invalid webhook response: '
        'expected response.uid="' in err.value.message
    )
    assert 'got "not-the-uid"' in err.value.message


async def test_ca_bundle_is_enforced(store: Store, webhook: WebhookServer) -> None:
    stranger = make_ca("stranger")
    configure(
        store,
        "a",
        hook(webhook, "ignored.waylay.dev", "/inject", ca=stranger, failurePolicy="Ignore"),
    )
    assert await admit(store, pod()) == pod()
    configure(store, "a", hook(webhook, "strict.waylay.dev", "/inject", ca=stranger))
    with pytest.raises(ApiError) as err:
        await admit(store, pod())
    assert err.value.code == 500
    assert "certificate verify failed" in err.value.message
    assert webhook.requests("/inject") == []


async def test_missing_service(store: Store, webhook: WebhookServer) -> None:
    h = hook(webhook, "gone.waylay.dev", "/inject")
    h["clientConfig"]["service"]["name"] = "absent"
    configure(store, "w", h)
    with pytest.raises(ApiError) as err:
        await admit(store, pod())
    assert err.value.message == (
        'Internal error occurred: failed calling webhook "gone.waylay.dev": '
        'failed to call webhook: service "absent" not found'
    )


async def test_denial_uses_webhook_status(store: Store, webhook: WebhookServer) -> None:
    configure(store, "w", hook(webhook, "deny.waylay.dev", "/deny"))
    with pytest.raises(ApiError) as err:
        await admit(store, pod())
    assert (err.value.code, err.value.reason) == (403, "Forbidden")
    assert err.value.message == 'admission webhook "deny.waylay.dev" denied the request: no thanks'


async def test_dry_run(store: Store, webhook: WebhookServer) -> None:
    configure(store, "w", hook(webhook, "inject.waylay.dev", "/inject"))
    out = await admit(store, pod(), dry_run=True)
    assert len(out["spec"]["containers"]) == 2
    assert webhook.requests("/inject")[0]["dryRun"] is True
    configure(store, "w", hook(webhook, "effects.waylay.dev", "/inject", sideEffects="Some"))
    with pytest.raises(ApiError) as err:
        await admit(store, pod(), dry_run=True)
    assert err.value.code == 400
    assert err.value.message == 'admission webhook "effects.waylay.dev" does not support dry run'


@pytest.mark.parametrize(("policy", "calls"), [("IfNeeded", 2), ("Never", 1)])
async def test_reinvocation(store: Store, webhook: WebhookServer, policy: str, calls: int) -> None:
    configure(
        store,
        "w",
        hook(webhook, "count.waylay.dev", "/count", reinvocationPolicy=policy),
        hook(webhook, "label.waylay.dev", "/label"),
    )
    out = await admit(store, pod())
    assert out["metadata"]["labels"]["stamped"] == "yes"
    assert out["metadata"]["annotations"] == {"calls": str(calls)}
    seen = webhook.requests("/count")
    assert len(seen) == calls
    if calls == 2:
        assert seen[1]["object"]["metadata"]["labels"]["stamped"] == "yes"
    assert len(webhook.requests("/label")) == 1


async def test_configurations_run_in_name_order(store: Store, webhook: WebhookServer) -> None:
    configure(store, "b-second", hook(webhook, "label.waylay.dev", "/label"))
    configure(store, "a-first", hook(webhook, "inject.waylay.dev", "/inject"))
    await admit(store, pod())
    assert "stamped" not in webhook.requests("/inject")[0]["object"]["metadata"]["labels"]
    assert len(webhook.requests("/label")[0]["object"]["spec"]["containers"]) == 2


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/error", "an error on the server ('boom') has prevented the request from succeeding"),
        ("/garbage", "received invalid webhook response: kind:"),
    ],
)
async def test_broken_webhook_answers(
    store: Store, webhook: WebhookServer, path: str, why: str
) -> None:
    configure(store, "w", hook(webhook, "broken.waylay.dev", path))
    with pytest.raises(ApiError) as err:
        await admit(store, pod())
    assert err.value.code == 500
    assert why in err.value.message
    configure(store, "w", hook(webhook, "broken.waylay.dev", path, failurePolicy="Ignore"))
    assert await admit(store, pod()) == pod()


async def test_namespace_objects_match_their_own_labels(
    store: Store, webhook: WebhookServer
) -> None:
    rules = [
        {"operations": ["CREATE"], "apiGroups": ["*"], "apiVersions": ["v1"], "resources": ["*"]}
    ]
    selector = {"matchLabels": {"inject": "on"}}
    configure(
        store,
        "w",
        hook(webhook, "echo.waylay.dev", "/echo", rules=rules, namespaceSelector=selector),
    )
    await admit(store, {"metadata": {"name": "a"}}, resource="namespaces", namespace=None)
    assert webhook.requests("/echo") == []
    labelled = {"metadata": {"name": "b", "labels": {"inject": "on"}}}
    await admit(store, labelled, resource="namespaces", namespace=None)
    assert len(webhook.requests("/echo")) == 1
    # Cluster-scoped objects other than namespaces are never exempted by it.
    await admit(
        store,
        {"metadata": {"name": "r"}},
        resource="clusterroles.rbac.authorization.k8s.io",
        namespace=None,
    )
    assert len(webhook.requests("/echo")) == 2
