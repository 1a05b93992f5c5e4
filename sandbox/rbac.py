"""RBAC authorization, evaluated the way kube-apiserver's RBAC authorizer does.

A request is allowed when any rule reachable from the user matches it:

- ClusterRoleBindings grant their ClusterRole's rules everywhere;
- RoleBindings grant their Role's (or ClusterRole's) rules in their namespace.

Subjects are ``User``, ``Group`` and ``ServiceAccount`` (a ServiceAccount
subject without a namespace means the binding's namespace). ``system:masters``
is allowed everything without looking at any object. ClusterRoles with an
``aggregationRule`` take the rules of every ClusterRole their selectors match.

Denials become the real 403 ``Status`` via ``Forbidden``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass
from typing import Any, Protocol

from sandbox.auth import MASTERS, UserInfo
from sandbox.errors import ApiError
from sandbox.selectors import match_label_selector

__all__ = ["Authorizer", "Forbidden", "ObjectReader", "ResourceAuthorizer"]

_RBAC = "rbac.authorization.k8s.io"
ROLES = f"roles.{_RBAC}"
CLUSTER_ROLES = f"clusterroles.{_RBAC}"
ROLE_BINDINGS = f"rolebindings.{_RBAC}"
CLUSTER_ROLE_BINDINGS = f"clusterrolebindings.{_RBAC}"


class ObjectReader(Protocol):
    """The part of ``sandbox.store.Store`` the authorizer reads."""

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None: ...

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]: ...


class ResourceAuthorizer(Protocol):
    """What asks "may USER do VERB on this?" for resource requests (``Authorizer`` does)."""

    def authorize(
        self,
        user: UserInfo,
        *,
        verb: str,
        api_group: str,
        resource: str,
        subresource: str,
        namespace: str | None,
        name: str | None,
    ) -> tuple[bool, str]: ...


# ---------------------------------------------------------------- rule matching


def _has(values: list[str], wanted: str) -> bool:
    return "*" in values or wanted in values


def _resource_matches(rule_resources: list[str], resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for rule_resource in rule_resources:
        if rule_resource in ("*", combined):
            return True
        if subresource and rule_resource == f"*/{subresource}":
            return True
    return False


def resource_rule_allows(
    rule: dict[str, Any],
    *,
    verb: str,
    api_group: str,
    resource: str,
    subresource: str,
    name: str | None,
) -> bool:
    """Does one PolicyRule allow this resource request?"""
    if not _has(rule.get("verbs") or [], verb):
        return False
    if not _has(rule.get("apiGroups") or [], api_group):
        return False
    if not _resource_matches(rule.get("resources") or [], resource, subresource):
        return False
    names = rule.get("resourceNames") or []
    return not names or (bool(name) and name in names)


def non_resource_rule_allows(rule: dict[str, Any], *, verb: str, path: str) -> bool:
    """Does one PolicyRule allow this non-resource request (``/api``, ``/version``)?"""
    if not _has(rule.get("verbs") or [], verb):
        return False
    for url in rule.get("nonResourceURLs") or []:
        if url == "*" or url == path or (url.endswith("*") and path.startswith(url[:-1])):
            return True
    return False


def _subject_matches(subject: dict[str, Any], user: UserInfo, binding_namespace: str) -> bool:
    kind = subject.get("kind")
    name = subject.get("name")
    if kind == "User":
        return bool(name == user.name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == f"system:serviceaccount:{namespace}:{name}"
    return False


# ------------------------------------------------------------------- authorizer


class Authorizer:
    """Answers "may USER do VERB on this?" from the RBAC objects in the store."""

    def __init__(self, store: ObjectReader) -> None:
        self.store = store

    def authorize(
        self,
        user: UserInfo,
        *,
        verb: str,
        api_group: str,
        resource: str,
        subresource: str,
        namespace: str | None,
        name: str | None,
    ) -> tuple[bool, str]:
        """``(allowed, reason)`` for a resource request.

        ``namespace`` is ``None`` (or empty) for cluster-scoped objects and for
        requests across all namespaces; ``name`` is ``None`` for list/watch/create.
        """
        if MASTERS in user.groups:
            return True, f'allowed: user "{user.name}" is in group "{MASTERS}"'
        for where, rule in self._rules_for(user, namespace or None):
            if resource_rule_allows(
                rule,
                verb=verb,
                api_group=api_group,
                resource=resource,
                subresource=subresource,
                name=name,
            ):
                return True, f"RBAC: allowed by {where}"
        return False, ""

    def authorize_non_resource(self, user: UserInfo, *, verb: str, path: str) -> tuple[bool, str]:
        """``(allowed, reason)`` for a non-resource path such as ``/api`` or ``/version``.

        Only ClusterRoles bound by ClusterRoleBindings can grant these.
        """
        if MASTERS in user.groups:
            return True, f'allowed: user "{user.name}" is in group "{MASTERS}"'
        for where, rule in self._rules_for(user, None):
            if non_resource_rule_allows(rule, verb=verb, path=path):
                return True, f"RBAC: allowed by {where}"
        return False, ""

    # ------------------------------------------------------------ internals

    def _rules_for(
        self, user: UserInfo, namespace: str | None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every rule that applies to ``user`` in ``namespace``, with where it came from."""
        for binding in self.store.list(CLUSTER_ROLE_BINDINGS):
            ref = binding.get("roleRef") or {}
            if ref.get("kind") != "ClusterRole" or not self._bound(binding, user, ""):
                continue
            where = (
                f'ClusterRoleBinding "{binding["metadata"]["name"]}" '
                f'of ClusterRole "{ref.get("name")}" to {self._who(user)}'
            )
            for rule in self._cluster_role_rules(str(ref.get("name", ""))):
                yield where, rule
        if not namespace:
            return
        for binding in self.store.list(ROLE_BINDINGS, namespace):
            if not self._bound(binding, user, namespace):
                continue
            ref = binding.get("roleRef") or {}
            ref_name = str(ref.get("name", ""))
            where = (
                f'RoleBinding "{binding["metadata"]["name"]}/{namespace}" '
                f'of {ref.get("kind")} "{ref_name}" to {self._who(user)}'
            )
            if ref.get("kind") == "ClusterRole":
                rules = self._cluster_role_rules(ref_name)
            elif ref.get("kind") == "Role":
                role = self.store.get(ROLES, namespace, ref_name)
                rules = list((role or {}).get("rules") or [])
            else:
                rules = []
            for rule in rules:
                yield where, rule

    @staticmethod
    def _bound(binding: dict[str, Any], user: UserInfo, namespace: str) -> bool:
        return any(
            _subject_matches(subject, user, namespace) for subject in binding.get("subjects") or []
        )

    @staticmethod
    def _who(user: UserInfo) -> str:
        sa = user.service_account
        if sa is not None:
            return f'ServiceAccount "{sa[1]}/{sa[0]}"'
        return f'User "{user.name}"'

    def _cluster_role_rules(self, name: str) -> list[dict[str, Any]]:
        role = self.store.get(CLUSTER_ROLES, None, name)
        if role is None:
            return []
        rules = list(role.get("rules") or [])
        aggregation = role.get("aggregationRule") or {}
        selectors = aggregation.get("clusterRoleSelectors") or []
        if selectors:
            for other in self.store.list(CLUSTER_ROLES):
                if other["metadata"]["name"] == name:
                    continue
                labels = other.get("metadata", {}).get("labels") or {}
                if any(match_label_selector(sel, labels) for sel in selectors):
                    rules.extend(other.get("rules") or [])
        return rules


# ----------------------------------------------------------------- 403 bodies


@dataclass(frozen=True)
class Forbidden:
    """A denied request, as kube-apiserver words it (``responsewriters.Forbidden``).

    For a non-resource request give ``path`` and leave the resource fields empty.
    """

    user: UserInfo
    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str | None = None
    name: str | None = None
    _: KW_ONLY
    path: str | None = None
    reason: str = ""

    def message(self) -> str:
        """kube-apiserver's text for the denial."""
        user = self.user.name
        if self.path is not None:
            detail = f'User "{user}" cannot {self.verb} path "{self.path}"'
        else:
            what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
            scope = (
                f'in the namespace "{self.namespace}"' if self.namespace else "at the cluster scope"
            )
            detail = (
                f'User "{user}" cannot {self.verb} resource "{what}" '
                f'in API group "{self.group}" {scope}'
            )
        if self.reason:
            detail = f"{detail}: {self.reason}"
        if self.path is not None or not self.resource:
            return f"forbidden: {detail}"
        qualified = f"{self.resource}.{self.group}" if self.group else self.resource
        if self.name:
            return f'{qualified} "{self.name}" is forbidden: {detail}'
        return f"{qualified} is forbidden: {detail}"

    def details(self) -> dict[str, Any]:
        """The ``Status`` details: name, group and kind of a resource request, else none."""
        details: dict[str, Any] = {}
        if self.path is None and self.resource:
            if self.name:
                details["name"] = self.name
            if self.group:
                details["group"] = self.group
            details["kind"] = self.resource
        return details

    def status(self) -> dict[str, Any]:
        """The 403 ``Status`` body kube-apiserver sends."""
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message(),
            "reason": "Forbidden",
            "details": self.details(),
            "code": 403,
        }

    def error(self) -> ApiError:
        """The denial as an ``ApiError`` the HTTP layer can raise."""
        return ApiError(403, "Forbidden", self.message(), details=self.details())
