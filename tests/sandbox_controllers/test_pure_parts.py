"""Pure parts of the endpoint controllers and the shared work queue.

Covers: ``find_port`` (numeric target, named target with matching protocol
only, missing name); ``in_endpoints`` (no IP, terminating, finished pods by
restartPolicy); Endpoints subsets repacked by port set with sorted addresses;
slices chunked at 100 endpoints and a placeholder when empty; the work queue
holds a key once, never hands a key being processed to a second worker,
requeues a key added while processing, delays ``add_after`` and backs off
exponentially until ``forget``.
"""

from __future__ import annotations

from typing import Any

import anyio

from sandbox.controllers._endpoints_build import (
    desired_slices,
    endpoints_subsets,
    find_port,
    in_endpoints,
)
from sandbox.controllers._workqueue import WorkQueue


def pod(name: str, ip: str, *, ready: bool = True, **ports: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "ports": [
                        {"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports.items()
                    ],
                }
            ]
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


SERVICE = {
    "metadata": {"name": "svc", "namespace": "ns"},
    "spec": {
        "clusterIP": "127.1.128.1",
        "ports": [{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}],
    },
}


def test_find_port() -> None:
    p = pod("a", "1.1.1.1", http=8080)
    assert find_port(p, {"port": 80, "targetPort": 9000}) == 9000
    assert find_port(p, {"port": 80, "targetPort": "http"}) == 8080
    assert find_port(p, {"port": 80, "targetPort": "http", "protocol": "UDP"}) is None
    assert find_port(p, {"port": 80, "targetPort": "grpc"}) is None
    assert find_port(p, {"port": 80}) == 80


def test_in_endpoints() -> None:
    assert in_endpoints(pod("a", "1.1.1.1"), include_terminating=False)
    assert not in_endpoints(pod("a", ""), include_terminating=False)
    dying = pod("a", "1.1.1.1")
    dying["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not in_endpoints(dying, include_terminating=False)
    assert in_endpoints(dying, include_terminating=True)
    done = pod("a", "1.1.1.1")
    done["status"]["phase"] = "Succeeded"
    assert in_endpoints(done, include_terminating=False)  # restartPolicy Always
    done["spec"]["restartPolicy"] = "Never"
    assert not in_endpoints(done, include_terminating=False)


def test_subsets_grouped_by_port_set() -> None:
    pods = [
        pod("b", "10.0.0.10", http=8080),
        pod("a", "10.0.0.9", http=8080),
        pod("c", "10.0.0.11", ready=False, http=9090),
        pod("d", "10.0.0.12", other=1),
    ]
    subsets = endpoints_subsets(SERVICE, pods)
    assert [[a["ip"] for a in s.get("addresses", [])] for s in subsets] == [
        ["10.0.0.9", "10.0.0.10"],
        [],
    ]
    assert subsets[1]["notReadyAddresses"][0]["ip"] == "10.0.0.11"
    assert [s["ports"] for s in subsets] == [
        [{"name": "web", "port": 8080, "protocol": "TCP"}],
        [{"name": "web", "port": 9090, "protocol": "TCP"}],
    ]


def test_slices_chunked_and_placeholder() -> None:
    pods = [pod(f"p{i:03}", f"10.0.{i // 250}.{i % 250 + 1}", http=8080) for i in range(150)]
    slices = desired_slices(SERVICE, pods)
    assert [len(endpoints) for _, endpoints in slices] == [100, 50]
    assert desired_slices(SERVICE, []) == [([], [])]


async def test_queue_dedupes_and_serialises_a_key() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("a")
    q.add("b")
    assert len(q) == 2
    assert await q.get() == "a"
    q.add("a")  # while processing: not handed out again yet
    assert await q.get() == "b"
    assert len(q) == 0
    q.done("a")
    assert await q.get() == "a"


async def test_queue_add_after_and_backoff() -> None:
    q: WorkQueue[str] = WorkQueue(base_delay=0.01, max_delay=0.04)
    assert [q.add_rate_limited("k") for _ in range(4)] == [0.01, 0.02, 0.04, 0.04]
    q.forget("k")
    assert q.failures("k") == 0
    q.add_after("later", 0.05)
    with anyio.fail_after(2):
        got = {await q.get(), await q.get()}
    assert got == {"k", "later"}
    q.close()
