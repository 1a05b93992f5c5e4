"""The Endpoints and EndpointSlice controllers, driven by Services and pods.

For every Service with a selector (and not ``ExternalName``) it keeps an
``Endpoints`` object of the same name and ``discovery.k8s.io/v1``
EndpointSlices (``<service>-<random>``, labelled
``kubernetes.io/service-name`` and owned by the Service) in step with the
selected pods; what goes in them is computed in ``_endpoints_build``. A
Service without a selector is left alone (its endpoints are the user's). When
a Service goes, its Endpoints go too (slices follow through their owner).

A pod event requeues the Services whose selector matches the pod's labels
before or after the change, so a relabelled pod leaves the old Service's
endpoints as it joins the new one's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sandbox.errors import ApiError

from ._base import ClusterLike, Controller, Key
from ._endpoints_build import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    desired_slices,
    endpoints_labels,
    endpoints_subsets,
    slice_labels,
)
from ._meta import Obj, labels_of, owner_reference, selector_matches_labels

__all__ = ["EndpointsController", "run_endpoints"]

SLICES = "endpointslices.discovery.k8s.io"


def _selector(service: Obj) -> dict[str, str] | None:
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return None
    return spec.get("selector") or None


class EndpointsController(Controller):
    name = "endpoints"
    component = "endpoint-controller"
    primary = "services"
    workers = 3

    def __init__(self, cluster: ClusterLike) -> None:
        super().__init__(cluster)
        self._pod_labels: dict[Key, dict[str, str]] = {}

    async def run(self) -> None:
        for pod in self.store.list("pods"):
            meta = pod["metadata"]
            self._pod_labels[(meta["namespace"], meta["name"])] = labels_of(pod)
        await super().run()

    def keys_for(self, event: str, resource: str, obj: Obj) -> Iterable[Key]:
        meta = obj.get("metadata") or {}
        ns, name = meta.get("namespace") or "", meta.get("name") or ""
        if resource == "services" or resource == "endpoints":
            return [(ns, name)]
        if resource == SLICES:
            service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
            return [(ns, service)] if service else []
        if resource != "pods":
            return []
        new = labels_of(obj)
        old = self._pod_labels.get((ns, name), new)
        if event == "DELETED":
            self._pod_labels.pop((ns, name), None)
        else:
            self._pod_labels[(ns, name)] = new
        return [
            (ns, svc["metadata"]["name"])
            for svc in self.store.list("services", ns)
            if (selector := _selector(svc)) is not None
            and (selector_matches_labels(selector, new) or selector_matches_labels(selector, old))
        ]

    async def reconcile(self, key: Key) -> float | None:
        ns, name = key
        service = self.store.get("services", ns, name)
        if service is None:
            await self._delete("endpoints", ns, name)
            return None
        selector = _selector(service)
        if selector is None:
            return None
        pods = [
            p
            for p in self.store.list("pods", ns)
            if selector_matches_labels(selector, labels_of(p))
        ]
        await self._sync_endpoints(service, pods)
        await self._sync_slices(service, pods)
        return None

    async def _sync_endpoints(self, service: Obj, pods: list[Obj]) -> None:
        ns, name = service["metadata"]["namespace"], service["metadata"]["name"]
        subsets = endpoints_subsets(service, pods)
        labels = endpoints_labels(service)
        current = self.store.get("endpoints", ns, name)
        if current is None:
            body: Obj = {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
            }
            if subsets:
                body["subsets"] = subsets
            try:
                await self.cluster.create("endpoints", body, namespace=ns)
            except ApiError as exc:
                if exc.code not in (403, 404):  # the namespace is going away
                    raise
            return
        if (current.get("subsets") or []) == subsets and labels_of(current) == labels:
            return
        current["metadata"]["labels"] = labels
        if subsets:
            current["subsets"] = subsets
        else:
            current.pop("subsets", None)
        await self.cluster.update("endpoints", current)

    async def _sync_slices(self, service: Obj, pods: list[Obj]) -> None:
        ns, name = service["metadata"]["namespace"], service["metadata"]["name"]
        existing = [
            s
            for s in self.store.list(SLICES, ns)
            if labels_of(s).get(SERVICE_NAME_LABEL) == name
            and labels_of(s).get(MANAGED_BY_LABEL) == MANAGED_BY
        ]
        labels = slice_labels(service)
        unused = list(existing)
        for ports, endpoints in desired_slices(service, pods):
            match = next((s for s in unused if (s.get("ports") or []) == ports), None)
            if match is None:
                await self._create_slice(service, labels, ports, endpoints)
                continue
            unused.remove(match)
            if (
                (match.get("endpoints") or []) == endpoints
                and labels_of(match) == labels
                and _owned(match, service)
            ):
                continue
            match["metadata"]["labels"] = labels
            match["metadata"]["ownerReferences"] = [_service_ref(service)]
            match["endpoints"] = endpoints
            _set_ports(match, ports)
            await self.cluster.update(SLICES, match)
        for stale in unused:
            await self._delete(SLICES, ns, stale["metadata"]["name"])

    async def _create_slice(
        self, service: Obj, labels: dict[str, str], ports: list[Obj], endpoints: list[Obj]
    ) -> None:
        body: Obj = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "generateName": f"{service['metadata']['name']}-",
                "namespace": service["metadata"]["namespace"],
                "labels": labels,
                "ownerReferences": [_service_ref(service)],
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
        }
        _set_ports(body, ports)
        try:
            await self.cluster.create(SLICES, body, namespace=service["metadata"]["namespace"])
        except ApiError as exc:
            if exc.code not in (403, 404):  # the namespace is going away
                raise

    async def _delete(self, resource: str, ns: str, name: str) -> None:
        try:
            await self.cluster.delete(resource, ns, name)
        except ApiError as exc:
            if exc.code != 404:
                raise


def _service_ref(service: Obj) -> dict[str, Any]:
    return owner_reference({**service, "apiVersion": "v1", "kind": "Service"})


def _owned(slice_: Obj, service: Obj) -> bool:
    refs = slice_["metadata"].get("ownerReferences") or []
    return refs == [_service_ref(service)]


def _set_ports(slice_: Obj, ports: list[Obj]) -> None:
    if ports:
        slice_["ports"] = ports
    else:
        slice_.pop("ports", None)


async def run_endpoints(cluster: ClusterLike) -> None:
    """Run the Endpoints and EndpointSlice controller until cancelled."""
    await EndpointsController(cluster).run()
