"""``Impersonate-User``/``Impersonate-Group`` headers (``kubectl --as``, ``--as-group``).

As in kube-apiserver: the authenticated caller needs the ``impersonate`` verb
on ``users`` (or ``serviceaccounts`` in the account's namespace, for
``system:serviceaccount:NS:NAME``) and on each ``groups`` it names; the request
then runs as that user, with the named groups plus ``system:authenticated``
(service accounts also get ``system:serviceaccounts`` and
``system:serviceaccounts:NS``). Handy to check RBAC manifests from the admin
kubeconfig: ``kubectl --as=system:serviceaccount:waylay:manager auth ...``.
"""

from __future__ import annotations

from collections.abc import Mapping

from sandbox.auth import UserInfo
from sandbox.errors import bad_request
from sandbox.rbac import Forbidden, ResourceAuthorizer

__all__ = ["impersonate"]

_SA_PREFIX = "system:serviceaccount:"
_AUTHENTICATED = "system:authenticated"


def _allow(
    authorizer: ResourceAuthorizer, caller: UserInfo, resource: str, name: str, ns: str | None
) -> None:
    allowed, _ = authorizer.authorize(
        caller,
        verb="impersonate",
        api_group="",
        resource=resource,
        subresource="",
        namespace=ns,
        name=name,
    )
    if not allowed:
        raise Forbidden(caller, "impersonate", "", resource, "", ns, name).error()


def impersonate(
    caller: UserInfo,
    headers: Mapping[str, str],
    groups: list[str],
    authorizer: ResourceAuthorizer | None,
) -> UserInfo:
    """The user a request runs as: ``caller``, or whom its impersonation headers name."""
    name = headers.get("Impersonate-User", "")
    if not name:
        if groups:
            raise bad_request("Impersonate-Group requires Impersonate-User")
        return caller
    user_groups: list[str] = []
    if name.startswith(_SA_PREFIX):
        namespace, _, account = name[len(_SA_PREFIX) :].partition(":")
        if not namespace or not account:
            raise bad_request(f"invalid service account name to impersonate: {name!r}")
        if authorizer is not None:
            _allow(authorizer, caller, "serviceaccounts", account, namespace)
        user_groups += ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
    elif authorizer is not None:
        _allow(authorizer, caller, "users", name, None)
    for group in groups:
        if authorizer is not None:
            _allow(authorizer, caller, "groups", group, None)
        if group not in user_groups:
            user_groups.append(group)
    if _AUTHENTICATED not in user_groups:
        user_groups.append(_AUTHENTICATED)
    return UserInfo(name=name, groups=tuple(user_groups), uid=headers.get("Impersonate-Uid", ""))
