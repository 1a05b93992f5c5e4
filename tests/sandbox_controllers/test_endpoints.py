"""The Endpoints and EndpointSlice controllers against an in-process sandbox cluster.

Covers: Endpoints of a Service list ready pods under ``addresses`` and running
but unready ones under ``notReadyAddresses``, with targetRef and nodeName;
pods without an IP are left out; a named targetPort resolves per pod (pods
offering different numbers land in different subsets, a pod without the name
is left out of that port); a relabelled pod leaves the Service; a Service
without a selector is left alone; deleting a Service deletes its Endpoints;
EndpointSlices carry the service-name and managed-by labels, an owner reference
to the Service, ready/serving/terminating conditions (terminating pods stay,
not ready); a headless Service without ports lists its pods with hostnames;
``publishNotReadyAddresses``; and, end to end through a Deployment, renaming the
app's port and giving the name to another container moves the Service there.
"""

from __future__ import annotations

from typing import Any

from sandbox.cluster import Cluster

from .helpers import (
    StandInNode,
    container,
    deployment,
    mark_ready,
    set_pod_status,
    taken_over_containers,
    until,
)

SLICES = "endpointslices.discovery.k8s.io"


def service(name: str, selector: dict[str, str] | None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "labels": {"team": "a"}},
        "spec": {"ports": [{"name": "web", "port": 80, "targetPort": "http"}], **spec},
    }
    if selector is not None:
        body["spec"]["selector"] = selector
    return body


async def make_pod(
    cluster: Cluster, name: str, *, ready: bool | None, app: str = "hello", **ports: int
) -> dict[str, Any]:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {"containers": [container(**ports)], "nodeName": "sandbox"},
    }
    pod = await cluster.create("pods", body)
    if ready is None:
        return pod
    return await set_pod_status(cluster, pod, ready=ready)


def endpoints(cluster: Cluster, name: str) -> dict[str, Any] | None:
    return cluster.store.get("endpoints", "default", name)


def subsets(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    ep = endpoints(cluster, name)
    return (ep or {}).get("subsets") or []


def slices(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    return [
        s
        for s in cluster.store.list(SLICES, "default")
        if s["metadata"]["labels"].get("kubernetes.io/service-name") == name
    ]


def ips(addresses: list[dict[str, Any]] | None) -> list[str]:
    return sorted(a["ip"] for a in addresses or [])


async def test_ready_and_not_ready_addresses(cluster: Cluster) -> None:
    a = await make_pod(cluster, "a", ready=True, http=8080)
    b = await make_pod(cluster, "b", ready=False, http=8080)
    await make_pod(cluster, "pending", ready=None, http=8080)  # no IP yet
    await make_pod(cluster, "other", ready=True, app="other", http=8080)
    await cluster.create("services", service("hello", {"app": "hello"}))
    found = await until(cluster, lambda: subsets(cluster, "hello"))
    assert len(found) == 1
    (subset,) = found
    assert ips(subset.get("addresses")) == [a["status"]["podIP"]]
    assert ips(subset.get("notReadyAddresses")) == [b["status"]["podIP"]]
    assert subset["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}]
    address = subset["addresses"][0]
    assert address["nodeName"] == "sandbox"
    assert address["targetRef"] == {
        "kind": "Pod",
        "namespace": "default",
        "name": "a",
        "uid": a["metadata"]["uid"],
    }
    assert endpoints(cluster, "hello")["metadata"]["labels"] == {"team": "a"}  # type: ignore[index]
    # b becomes ready: it moves to addresses.
    await mark_ready(cluster, b)
    await until(
        cluster,
        lambda: (
            ips(subsets(cluster, "hello")[0].get("addresses"))
            == sorted([a["status"]["podIP"], b["status"]["podIP"]])
        ),
    )


async def test_named_target_port_resolves_per_pod(cluster: Cluster) -> None:
    a = await make_pod(cluster, "a", ready=True, http=8080)
    b = await make_pod(cluster, "b", ready=True, http=9090)
    await make_pod(cluster, "c", ready=True, metrics=9100)  # no port named http
    await cluster.create("services", service("hello", {"app": "hello"}))
    found = await until(
        cluster, lambda: len(subsets(cluster, "hello")) == 2 and subsets(cluster, "hello")
    )
    by_port = {s["ports"][0]["port"]: ips(s["addresses"]) for s in found}
    assert by_port == {8080: [a["status"]["podIP"]], 9090: [b["status"]["podIP"]]}
    (ports_8080,) = [
        s
        for s in slices(cluster, "hello")
        if s.get("ports") == [{"name": "web", "port": 8080, "protocol": "TCP"}]
    ]
    assert [e["addresses"] for e in ports_8080["endpoints"]] == [[a["status"]["podIP"]]]


async def test_relabelled_pod_leaves_the_service(cluster: Cluster) -> None:
    await make_pod(cluster, "a", ready=True, http=8080)
    await cluster.create("services", service("hello", {"app": "hello"}))
    await until(cluster, lambda: subsets(cluster, "hello"))
    await cluster.patch(
        "pods", "default", "a", {"metadata": {"labels": {"app": "gone"}}}, patch_type="merge"
    )
    await until(
        cluster, lambda: endpoints(cluster, "hello") is not None and not subsets(cluster, "hello")
    )
    await until(cluster, lambda: [s.get("endpoints") for s in slices(cluster, "hello")] == [[]])


async def test_service_without_selector_is_left_alone(cluster: Cluster) -> None:
    await make_pod(cluster, "a", ready=True, http=8080)
    manual = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "external", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "127.9.9.9"}], "ports": [{"port": 5432}]}],
    }
    await cluster.create("endpoints", manual)
    await cluster.create("services", service("external", None))
    await cluster.create("services", service("hello", {"app": "hello"}))
    await until(cluster, lambda: subsets(cluster, "hello"))  # the controller has run
    assert subsets(cluster, "external") == manual["subsets"]
    assert slices(cluster, "external") == []


async def test_deleting_the_service_deletes_endpoints_and_slices(cluster: Cluster) -> None:
    await make_pod(cluster, "a", ready=True, http=8080)
    await cluster.create("services", service("hello", {"app": "hello"}))
    await until(cluster, lambda: subsets(cluster, "hello") and slices(cluster, "hello"))
    await cluster.delete("services", "default", "hello")
    await until(
        cluster, lambda: endpoints(cluster, "hello") is None and not slices(cluster, "hello")
    )


async def test_slices_mark_terminating_endpoints(cluster: Cluster, node: StandInNode) -> None:
    svc = await cluster.create("services", service("hello", {"app": "hello"}))
    a = await make_pod(cluster, "a", ready=True, http=8080)
    (slice_,) = await until(
        cluster, lambda: (found := slices(cluster, "hello")) and found[0].get("endpoints") and found
    )
    labels = slice_["metadata"]["labels"]
    assert labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert labels["team"] == "a"
    assert slice_["metadata"]["name"].startswith("hello-")
    assert slice_["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "name": "hello",
            "uid": svc["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert slice_["addressType"] == "IPv4"
    (endpoint,) = slice_["endpoints"]
    assert endpoint["addresses"] == [a["status"]["podIP"]]
    assert endpoint["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert endpoint["targetRef"]["name"] == "a" and endpoint["nodeName"] == "sandbox"
    node.hold = True
    await cluster.delete("pods", "default", "a")
    await until(
        cluster,
        lambda: (
            [e["conditions"] for e in slices(cluster, "hello")[0]["endpoints"]]
            == [{"ready": False, "serving": True, "terminating": True}]
        ),
    )
    assert not subsets(cluster, "hello")  # Endpoints drop terminating pods at once
    node.release()
    await until(cluster, lambda: slices(cluster, "hello")[0]["endpoints"] == [])


async def test_headless_service_without_ports(cluster: Cluster) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "db-0", "namespace": "default", "labels": {"app": "db"}},
        "spec": {
            "containers": [container()],
            "hostname": "db-0",
            "subdomain": "db",
            "nodeName": "sandbox",
        },
    }
    pod = await set_pod_status(cluster, await cluster.create("pods", body), ready=True)
    headless = service("db", {"app": "db"}, clusterIP="None")
    headless["spec"]["ports"] = []
    await cluster.create("services", headless)
    (subset,) = await until(cluster, lambda: subsets(cluster, "db"))
    assert "ports" not in subset
    assert subset["addresses"][0]["hostname"] == "db-0"
    assert subset["addresses"][0]["ip"] == pod["status"]["podIP"]
    ep = endpoints(cluster, "db")
    assert ep is not None and ep["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    (slice_,) = await until(
        cluster, lambda: (s := slices(cluster, "db")) and s[0]["endpoints"] and s
    )
    assert slice_["endpoints"][0]["hostname"] == "db-0"
    assert "ports" not in slice_


async def test_publish_not_ready_addresses(cluster: Cluster) -> None:
    b = await make_pod(cluster, "b", ready=False, http=8080)
    await cluster.create(
        "services", service("hello", {"app": "hello"}, publishNotReadyAddresses=True)
    )
    (subset,) = await until(cluster, lambda: subsets(cluster, "hello"))
    assert ips(subset.get("addresses")) == [b["status"]["podIP"]]
    assert "notReadyAddresses" not in subset


async def test_follows_a_renamed_named_port_through_a_rollout(cluster: Cluster) -> None:
    """What an intercept does: the app's port becomes ``wl-http``, an agent takes ``http``."""
    await cluster.create("deployments.apps", deployment("hello", 2, strategy={"type": "Recreate"}))
    await cluster.create("services", service("hello", {"app": "hello"}))

    def pending() -> list[dict[str, Any]]:
        return [
            p
            for p in cluster.store.list("pods", "default")
            if not (p.get("status") or {}).get("podIP")
            and not p["metadata"].get("deletionTimestamp")
        ]

    async def run_pods(port: int) -> None:
        while True:
            found = await until(
                cluster,
                lambda: (
                    pending()
                    or [
                        s["ports"][0]["port"]
                        for s in subsets(cluster, "hello")
                        if len(s.get("addresses") or []) == 2
                    ]
                    == [port]
                ),
                what=f"pods to run or endpoints on {port}",
            )
            if found is True:
                return
            await mark_ready(cluster, found[0])

    await run_pods(8080)
    d = cluster.store.get("deployments.apps", "default", "hello")
    assert d is not None
    d["spec"]["template"]["spec"]["containers"] = taken_over_containers()
    await cluster.update("deployments.apps", d)
    await run_pods(9900)
    (subset,) = subsets(cluster, "hello")
    assert subset["ports"] == [{"name": "web", "port": 9900, "protocol": "TCP"}]
    await until(
        cluster, lambda: {s["ports"][0]["port"] for s in slices(cluster, "hello")} == {9900}
    )
