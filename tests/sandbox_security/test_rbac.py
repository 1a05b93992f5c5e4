"""sandbox.rbac and sandbox.bootstrap: RBAC decisions and 403 bodies.

Covers: system:masters is allowed everything with no objects; a Role via a
RoleBinding grants only in its namespace; a ClusterRole via a RoleBinding is
namespace-limited, via a ClusterRoleBinding cluster-wide; User, Group and
ServiceAccount subjects (SA subject namespace defaulting to the binding's);
service-account groups (system:serviceaccounts:NS); resourceNames (and that
they never match list/create with no name); subresources (`pods/log` does not
grant `pods`, `pods` does not grant `pods/log`, `*/scale`, `*`); apiGroups;
verbs `*`; aggregated ClusterRoles; nonResourceURLs with wildcards; the exact
403 Status body/messages of kube-apiserver (namespaced, cluster scope,
subresource, no name, non-resource path); the bootstrap objects: developer is
read-only plus pods/log and pods/portforward, everyone authenticated may read
discovery, admin is cluster-admin.
"""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.auth import ADMIN, DEVELOPER, Authenticator, UserInfo
from sandbox.bootstrap import bootstrap_objects
from sandbox.rbac import Authorizer, Forbidden
from sandbox.resources import RESOURCES
from sandbox.store import Store

RBAC = "rbac.authorization.k8s.io"
ALICE = UserInfo(name="alice", groups=("system:authenticated",))
OPS = UserInfo(name="bob", groups=("ops", "system:authenticated"))


def _sa(namespace: str, name: str) -> UserInfo:
    auth = Authenticator()
    user = auth.authenticate(f"Bearer {auth.issue_service_account_token(namespace, name)}")
    assert user is not None
    return user


MANAGER = _sa("shop", "manager")


def _put(store: Store, resource: str, obj: dict[str, Any]) -> None:
    store.put(resource, obj)


def role(store: Store, ns: str, name: str, rules: list[dict[str, Any]]) -> None:
    _put(store, f"roles.{RBAC}", {"metadata": {"name": name, "namespace": ns}, "rules": rules})


def cluster_role(
    store: Store,
    name: str,
    rules: list[dict[str, Any]],
    *,
    labels: dict[str, str] | None = None,
    aggregate: dict[str, str] | None = None,
) -> None:
    obj: dict[str, Any] = {"metadata": {"name": name, "labels": labels or {}}, "rules": rules}
    if aggregate:
        obj["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": aggregate}]}
    _put(store, f"clusterroles.{RBAC}", obj)


def binding(
    store: Store,
    ns: str | None,
    name: str,
    kind: str,
    ref: str,
    subjects: list[dict[str, Any]],
) -> None:
    meta: dict[str, Any] = {"name": name}
    if ns:
        meta["namespace"] = ns
    obj = {
        "metadata": meta,
        "roleRef": {"apiGroup": RBAC, "kind": kind, "name": ref},
        "subjects": subjects,
    }
    _put(store, f"rolebindings.{RBAC}" if ns else f"clusterrolebindings.{RBAC}", obj)


def user(name: str) -> dict[str, Any]:
    return {"kind": "User", "apiGroup": RBAC, "name": name}


def allowed(
    authz: Authorizer,
    who: UserInfo,
    verb: str,
    resource: str,
    *,
    group: str = "",
    sub: str = "",
    ns: str | None = "shop",
    name: str | None = None,
) -> bool:
    ok, _ = authz.authorize(
        who, verb=verb, api_group=group, resource=resource, subresource=sub, namespace=ns, name=name
    )
    return ok


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def authz(store: Store) -> Authorizer:
    return Authorizer(store)


def test_masters_allowed_everything_without_objects(authz: Authorizer) -> None:
    ok, reason = authz.authorize(
        ADMIN,
        verb="delete",
        api_group="",
        resource="namespaces",
        subresource="",
        namespace=None,
        name="kube-system",
    )
    assert ok and "system:masters" in reason
    assert authz.authorize_non_resource(ADMIN, verb="get", path="/anything")[0]
    assert not allowed(authz, ALICE, "get", "pods")


def test_role_binding_grants_only_in_its_namespace(store: Store, authz: Authorizer) -> None:
    role(store, "shop", "reader", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])
    binding(store, "shop", "alice-reads", "Role", "reader", [user("alice")])
    assert allowed(authz, ALICE, "get", "pods", name="web-1")
    _, reason = authz.authorize(
        ALICE, verb="get", api_group="", resource="pods", subresource="", namespace="shop", name="x"
    )
    assert (
        reason == 'RBAC: allowed by RoleBinding "alice-reads/shop" of Role "reader" to User "alice"'
    )
    assert not allowed(authz, ALICE, "list", "pods")
    assert not allowed(authz, ALICE, "get", "pods", ns="other")
    assert not allowed(authz, ALICE, "get", "pods", ns=None)
    assert not allowed(authz, ALICE, "get", "services")
    assert not allowed(authz, OPS, "get", "pods")


def test_role_binding_to_missing_role_grants_nothing(store: Store, authz: Authorizer) -> None:
    binding(store, "shop", "dangling", "Role", "nope", [user("alice")])
    binding(store, "shop", "dangling2", "ClusterRole", "nope", [user("alice")])
    assert not allowed(authz, ALICE, "get", "pods")


def test_cluster_role_via_role_binding_is_namespace_limited(
    store: Store, authz: Authorizer
) -> None:
    cluster_role(store, "deployer", [{"apiGroups": ["apps"], "resources": ["*"], "verbs": ["*"]}])
    binding(store, "shop", "ops", "ClusterRole", "deployer", [{"kind": "Group", "name": "ops"}])
    assert allowed(authz, OPS, "patch", "deployments", group="apps", name="web")
    assert not allowed(authz, OPS, "patch", "deployments", group="apps", ns="other")
    assert not allowed(authz, OPS, "list", "deployments", group="apps", ns=None)
    assert not allowed(authz, OPS, "get", "pods")  # core group is not "apps"


def test_cluster_role_binding_is_cluster_wide(store: Store, authz: Authorizer) -> None:
    cluster_role(
        store,
        "ns-reader",
        [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}],
    )
    binding(store, None, "alice-ns", "ClusterRole", "ns-reader", [user("alice")])
    assert allowed(authz, ALICE, "list", "namespaces", ns=None)
    assert allowed(authz, ALICE, "watch", "namespaces", ns=None)
    assert not allowed(authz, ALICE, "delete", "namespaces", ns=None, name="shop")


def test_service_account_subjects_and_groups(store: Store, authz: Authorizer) -> None:
    role(
        store,
        "shop",
        "leases",
        [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["*"]}],
    )
    # No namespace in the subject: the binding's namespace is meant.
    binding(store, "shop", "mgr", "Role", "leases", [{"kind": "ServiceAccount", "name": "manager"}])
    assert allowed(authz, MANAGER, "update", "leases", group="coordination.k8s.io", name="x")
    assert not allowed(
        authz, _sa("other", "manager"), "update", "leases", group="coordination.k8s.io"
    )

    role(store, "shop", "cm", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}])
    binding(
        store,
        "shop",
        "all-sa",
        "Role",
        "cm",
        [{"kind": "Group", "name": "system:serviceaccounts:shop"}],
    )
    assert allowed(authz, _sa("shop", "anyone"), "get", "configmaps", name="c")
    assert not allowed(authz, DEVELOPER, "get", "configmaps", name="c")

    # An SA of another namespace named explicitly in a ClusterRoleBinding.
    cluster_role(
        store, "pod-reader", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    )
    binding(
        store,
        None,
        "mgr-pods",
        "ClusterRole",
        "pod-reader",
        [{"kind": "ServiceAccount", "name": "manager", "namespace": "shop"}],
    )
    assert allowed(authz, MANAGER, "list", "pods", ns=None)
    _, reason = authz.authorize(
        MANAGER,
        verb="list",
        api_group="",
        resource="pods",
        subresource="",
        namespace=None,
        name=None,
    )
    assert reason.endswith('to ServiceAccount "manager/shop"')


def test_resource_names(store: Store, authz: Authorizer) -> None:
    role(
        store,
        "shop",
        "one-cm",
        [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": ["settings"],
                "verbs": ["get", "update", "list", "create"],
            }
        ],
    )
    binding(store, "shop", "b", "Role", "one-cm", [user("alice")])
    assert allowed(authz, ALICE, "get", "configmaps", name="settings")
    assert allowed(authz, ALICE, "update", "configmaps", name="settings")
    assert not allowed(authz, ALICE, "get", "configmaps", name="secrets-too")
    assert not allowed(authz, ALICE, "list", "configmaps")
    assert not allowed(authz, ALICE, "create", "configmaps")


def test_subresources(store: Store, authz: Authorizer) -> None:
    role(
        store,
        "shop",
        "logs",
        [
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
            {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["update"]},
            {"apiGroups": [""], "resources": ["services"], "verbs": ["get"]},
        ],
    )
    binding(store, "shop", "b", "Role", "logs", [user("alice")])
    assert allowed(authz, ALICE, "get", "pods", sub="log", name="p")
    assert not allowed(authz, ALICE, "get", "pods", name="p")
    assert not allowed(authz, ALICE, "get", "pods", sub="status", name="p")
    assert allowed(authz, ALICE, "update", "deployments", group="apps", sub="scale", name="d")
    assert allowed(authz, ALICE, "update", "statefulsets", group="apps", sub="scale", name="s")
    assert not allowed(authz, ALICE, "update", "deployments", group="apps", name="d")
    assert allowed(authz, ALICE, "get", "services", name="s")
    assert not allowed(authz, ALICE, "get", "services", sub="status", name="s")

    cluster_role(store, "all", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]}])
    binding(store, None, "all", "ClusterRole", "all", [user("bob")])
    assert allowed(authz, OPS, "get", "pods", sub="log", ns="x", name="p")


def test_aggregated_cluster_role(store: Store, authz: Authorizer) -> None:
    cluster_role(store, "view", [], aggregate={"example.com/aggregate-to-view": "true"})
    cluster_role(
        store,
        "view-ingresses",
        [{"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get"]}],
        labels={"example.com/aggregate-to-view": "true"},
    )
    cluster_role(
        store, "unrelated", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    )
    binding(store, "shop", "b", "ClusterRole", "view", [user("alice")])
    assert allowed(authz, ALICE, "get", "ingresses", group="networking.k8s.io", name="i")
    assert not allowed(authz, ALICE, "get", "secrets", name="s")


def test_non_resource_urls(store: Store, authz: Authorizer) -> None:
    cluster_role(
        store, "disc", [{"nonResourceURLs": ["/api", "/apis/*", "/version"], "verbs": ["get"]}]
    )
    binding(store, None, "disc", "ClusterRole", "disc", [user("alice")])
    assert authz.authorize_non_resource(ALICE, verb="get", path="/api")[0]
    assert authz.authorize_non_resource(ALICE, verb="get", path="/apis/apps/v1")[0]
    assert not authz.authorize_non_resource(ALICE, verb="get", path="/api/v1")[0]
    assert not authz.authorize_non_resource(ALICE, verb="post", path="/version")[0]
    # RoleBindings cannot grant non-resource URLs.
    role(store, "shop", "r", [{"nonResourceURLs": ["*"], "verbs": ["*"]}])
    binding(store, "shop", "r", "Role", "r", [user("bob")])
    assert not authz.authorize_non_resource(OPS, verb="get", path="/api")[0]


def test_forbidden_status_is_kube_apiservers() -> None:
    assert Forbidden(DEVELOPER, "delete", "", "pods", "", "shop", "x").status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "x" is forbidden: User "developer" cannot delete resource "pods" '
        'in API group "" in the namespace "shop"',
        "reason": "Forbidden",
        "details": {"name": "x", "kind": "pods"},
        "code": 403,
    }


@pytest.mark.parametrize(
    ("args", "message", "details"),
    [
        (
            ("list", "apps", "deployments", "", None, None),
            'deployments.apps is forbidden: User "developer" cannot list resource '
            '"deployments" in API group "apps" at the cluster scope',
            {"group": "apps", "kind": "deployments"},
        ),
        (
            ("create", "", "pods", "portforward", "shop", "web-1"),
            'pods "web-1" is forbidden: User "developer" cannot create resource '
            '"pods/portforward" in API group "" in the namespace "shop"',
            {"name": "web-1", "kind": "pods"},
        ),
        (
            ("create", "rbac.authorization.k8s.io", "rolebindings", "", "shop", None),
            "rolebindings.rbac.authorization.k8s.io is forbidden: "
            'User "developer" cannot create resource "rolebindings" '
            'in API group "rbac.authorization.k8s.io" in the namespace "shop"',
            {"group": "rbac.authorization.k8s.io", "kind": "rolebindings"},
        ),
    ],
)
def test_forbidden_messages(args: tuple[Any, ...], message: str, details: dict[str, Any]) -> None:
    body = Forbidden(DEVELOPER, *args).status()
    assert body["message"] == message
    assert body["details"] == details
    err = Forbidden(DEVELOPER, *args).error()
    assert (err.code, err.reason, err.message) == (403, "Forbidden", message)


def test_forbidden_non_resource_path() -> None:
    body = Forbidden(ALICE, "get", "", "", "", None, None, path="/metrics").status()
    assert body["message"] == 'forbidden: User "alice" cannot get path "/metrics"'
    assert body["details"] == {}


# ------------------------------------------------------------------ bootstrap


@pytest.fixture
def booted(store: Store) -> Authorizer:
    for resource, obj in bootstrap_objects():
        store.put(resource, obj)
    return Authorizer(store)


def test_bootstrap_namespaces_and_service_accounts(store: Store, booted: Authorizer) -> None:
    names = [ns["metadata"]["name"] for ns in store.list("namespaces")]
    assert sorted(names) == ["default", "kube-public", "kube-system"]
    for ns in names:
        assert store.get("serviceaccounts", ns, "default") is not None


@pytest.mark.parametrize("res", RESOURCES, ids=lambda r: r.key)
def test_developer_reads_every_served_resource(booted: Authorizer, res: Any) -> None:
    ns = "shop" if res.namespaced else None
    for verb in ("get", "list", "watch"):
        assert allowed(booted, DEVELOPER, verb, res.plural, group=res.group, ns=ns, name="n")
    for verb in ("create", "update", "patch", "delete", "deletecollection"):
        assert not allowed(booted, DEVELOPER, verb, res.plural, group=res.group, ns=ns, name="n")
    for sub in res.subresources:
        if sub in ("status", "scale"):
            assert allowed(
                booted, DEVELOPER, "get", res.plural, group=res.group, sub=sub, ns=ns, name="n"
            )
            assert not allowed(
                booted, DEVELOPER, "update", res.plural, group=res.group, sub=sub, ns=ns, name="n"
            )


def test_developer_logs_and_portforward_only(booted: Authorizer) -> None:
    assert allowed(booted, DEVELOPER, "get", "pods", sub="log", name="p")
    assert allowed(booted, DEVELOPER, "create", "pods", sub="portforward", name="p")
    assert allowed(booted, DEVELOPER, "get", "pods", sub="portforward", name="p")
    assert not allowed(booted, DEVELOPER, "create", "pods", sub="exec", name="p")
    assert not allowed(booted, DEVELOPER, "delete", "pods", name="p")


def test_discovery_for_everyone_authenticated(booted: Authorizer) -> None:
    for who in (DEVELOPER, MANAGER):
        for path in ("/api", "/api/v1", "/apis", "/apis/apps/v1", "/version", "/openapi/v3"):
            assert booted.authorize_non_resource(who, verb="get", path=path)[0], (who, path)
    assert not booted.authorize_non_resource(DEVELOPER, verb="get", path="/metrics")[0]
    assert not allowed(booted, MANAGER, "get", "pods", name="p")
