"""The ServiceAccount controller: every namespace has a ``default`` ServiceAccount.

As kube-controller-manager's ``serviceaccount-controller`` does: when a
namespace appears (or its ``default`` ServiceAccount is deleted) the account
is created, unless the namespace is terminating. Pods that name no
``serviceAccountName`` run as ``default``, and the kubelet issues their token
for it; without this, that token would not authenticate.
"""

from __future__ import annotations

from collections.abc import Iterable

from sandbox.errors import ApiError

from ._base import ClusterLike, Controller, Key
from ._meta import Obj

__all__ = ["DEFAULT_ACCOUNT", "ServiceAccountController", "run"]

DEFAULT_ACCOUNT = "default"


class ServiceAccountController(Controller):
    name = "serviceaccount"
    primary = "namespaces"
    workers = 1

    def keys_for(self, event: str, resource: str, obj: Obj) -> Iterable[Key]:
        meta = obj.get("metadata") or {}
        if resource == "namespaces" and event != "DELETED":
            return [("", meta.get("name") or "")]
        if (
            resource == "serviceaccounts"
            and event == "DELETED"
            and meta.get("name") == DEFAULT_ACCOUNT
        ):
            return [("", meta.get("namespace") or "")]
        return []

    async def reconcile(self, key: Key) -> float | None:
        namespace = key[1]
        ns = self.store.get("namespaces", None, namespace)
        if ns is None or (ns.get("metadata") or {}).get("deletionTimestamp"):
            return None
        if (ns.get("status") or {}).get("phase") == "Terminating":
            return None
        if self.store.get("serviceaccounts", namespace, DEFAULT_ACCOUNT) is not None:
            return None
        account = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": DEFAULT_ACCOUNT, "namespace": namespace},
        }
        try:
            await self.cluster.create("serviceaccounts", account, namespace=namespace)
        except ApiError as exc:
            if exc.code not in (409, 403, 404):  # exists; namespace going or gone
                raise
        return None


async def run(cluster: ClusterLike) -> None:
    """Run the ServiceAccount controller until cancelled."""
    await ServiceAccountController(cluster).run()
