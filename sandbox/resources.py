"""The resource table: every kind the sandbox serves, as discovery advertises it.

A resource's *key* is ``"<plural>"`` in the core group and ``"<plural>.<group>"``
otherwise (``"pods"``, ``"deployments.apps"``); the store, the service layer,
RBAC and the controllers all name resources by key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox.errors import ApiError

__all__ = ["GROUPS", "RESOURCES", "ResourceType", "by_key", "by_kind", "lookup"]

_RW = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

SUBRESOURCE_VERBS: dict[str, tuple[str, ...]] = {
    "status": ("get", "patch", "update"),
    "scale": ("get", "patch", "update"),
    "log": ("get",),
    "portforward": ("create", "get"),
}


@dataclass(frozen=True)
class ResourceType:
    """One served resource (one row of ``kubectl api-resources``)."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = field(default=_RW)

    @property
    def key(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def url_prefix(self) -> str:
        """``/api/v1`` or ``/apis/<group>/<version>``."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


def _r(
    group: str,
    kind: str,
    plural: str,
    *,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    sub: tuple[str, ...] = (),
    all_category: bool = False,
    version: str = "v1",
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        kind=kind,
        plural=plural,
        namespaced=namespaced,
        short_names=short,
        subresources=sub,
        categories=("all",) if all_category else (),
    )


RESOURCES: tuple[ResourceType, ...] = (
    _r("", "Namespace", "namespaces", namespaced=False, short=("ns",)),
    _r("", "Pod", "pods", short=("po",), sub=("status", "log", "portforward"), all_category=True),
    _r("", "Service", "services", short=("svc",), sub=("status",), all_category=True),
    _r("", "Endpoints", "endpoints", short=("ep",)),
    _r("", "ConfigMap", "configmaps", short=("cm",)),
    _r("", "Secret", "secrets"),
    _r("", "ServiceAccount", "serviceaccounts", short=("sa",)),
    _r("", "Event", "events", short=("ev",)),
    _r(
        "apps",
        "Deployment",
        "deployments",
        short=("deploy",),
        sub=("status", "scale"),
        all_category=True,
    ),
    _r(
        "apps",
        "ReplicaSet",
        "replicasets",
        short=("rs",),
        sub=("status", "scale"),
        all_category=True,
    ),
    _r(
        "apps",
        "StatefulSet",
        "statefulsets",
        short=("sts",),
        sub=("status", "scale"),
        all_category=True,
    ),
    _r("rbac.authorization.k8s.io", "Role", "roles"),
    _r("rbac.authorization.k8s.io", "ClusterRole", "clusterroles", namespaced=False),
    _r("rbac.authorization.k8s.io", "RoleBinding", "rolebindings"),
    _r("rbac.authorization.k8s.io", "ClusterRoleBinding", "clusterrolebindings", namespaced=False),
    _r(
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        namespaced=False,
    ),
    _r("networking.k8s.io", "Ingress", "ingresses", short=("ing",), sub=("status",)),
    _r("coordination.k8s.io", "Lease", "leases"),
    _r("discovery.k8s.io", "EndpointSlice", "endpointslices"),
)

_BY_KEY = {r.key: r for r in RESOURCES}
_BY_URL = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_KIND = {(r.api_version, r.kind): r for r in RESOURCES}

GROUPS: dict[str, list[str]] = {}
"""Group name ("" for core) -> served versions, in discovery order."""
for _res in RESOURCES:
    _versions = GROUPS.setdefault(_res.group, [])
    if _res.version not in _versions:
        _versions.append(_res.version)


def by_key(key: str) -> ResourceType:
    """The resource for a key such as ``"deployments.apps"``; 404 when not served."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({key})")


def lookup(group: str, version: str, plural: str) -> ResourceType:
    """The resource a URL names; 404 when not served."""
    try:
        return _BY_URL[(group, version, plural)]
    except KeyError:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    """The resource for an object's ``apiVersion`` and ``kind``, if served."""
    return _BY_KIND.get((api_version, kind))
