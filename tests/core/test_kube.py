"""core.kube against a real sandbox API server, through the real kubernetes client.

Covers: connecting by context; create/get/list/replace/patch (merge,
strategic, json)/apply/delete on dicts; missing objects give None/False;
paginated lists; kinds outside the built-in table found by API discovery;
403 -> RbacDenied naming verb, resource and namespace; 401 -> RbacDenied
saying the credentials were rejected; a dead server -> ContextUnreachable;
watches start with RELISTED, deliver ADDED/MODIFIED/DELETED, resume after the
server ends the stream without replaying, relist after 410 (compaction),
and stop() from another thread ends the iteration.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from core.errors import ContextUnreachable, KubeApiError, RbacDenied
from core.kube import Kube, WatchEvent
from tests.core.apiserver import SandboxApi, write_kubeconfig


def _cm(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "demo"},
        "data": data,
    }


async def _kube(api: SandboxApi, context: str = "admin") -> Kube:
    return await anyio.to_thread.run_sync(Kube.from_kubeconfig, str(api.kubeconfig), context)


async def test_crud(api: SandboxApi) -> None:
    kube = await _kube(api)
    assert kube.context.name == "admin" and kube.namespace == "demo"

    def body() -> None:
        assert kube.version()
        created = kube.create("v1", "ConfigMap", _cm("a", k="1"))
        assert created["metadata"]["uid"]
        assert kube.get("v1", "configmaps", "a", "demo")["data"] == {"k": "1"}  # type: ignore[index]
        assert kube.get("v1", "ConfigMap", "missing", "demo") is None
        kube.patch("v1", "ConfigMap", "a", {"data": {"m": "2"}}, "demo")
        kube.patch("v1", "ConfigMap", "a", {"data": {"s": "3"}}, "demo", patch_type="strategic")
        kube.patch(
            "v1", "ConfigMap", "a", [{"op": "remove", "path": "/data/k"}], "demo", patch_type="json"
        )
        got = kube.get("v1", "ConfigMap", "a", "demo")
        assert got is not None and got["data"] == {"m": "2", "s": "3"}
        got["data"] = {"r": "4"}
        assert kube.replace("v1", "ConfigMap", got)["data"] == {"r": "4"}
        applied = kube.apply(_cm("b", x="y"))
        assert applied["data"] == {"x": "y"}
        assert kube.delete("v1", "ConfigMap", "a", "demo") is True
        assert kube.delete("v1", "ConfigMap", "a", "demo") is False
        with pytest.raises(KubeApiError) as info:
            kube.create("v1", "ConfigMap", _cm("b"))
        assert info.value.status == 409

    await anyio.to_thread.run_sync(body)
    kube.close()


async def test_pagination_and_discovery(api: SandboxApi) -> None:
    kube = await _kube(api)

    def body() -> None:
        for i in range(5):
            kube.create("v1", "ConfigMap", _cm(f"p{i}"))
        items, rv = kube.list("v1", "ConfigMap", "demo", page_size=2)
        assert sorted(i["metadata"]["name"] for i in items) == [f"p{i}" for i in range(5)]
        assert rv
        assert all(i["kind"] == "ConfigMap" for i in items)
        res = kube.resource("networking.k8s.io/v1", "Ingress")
        assert (res.plural, res.namespaced) == ("ingresses", True)
        assert kube.list("networking.k8s.io/v1", "ingresses", "demo")[0] == []
        with pytest.raises(KubeApiError, match="does not serve"):
            kube.resource("networking.k8s.io/v1", "Gadget")

    await anyio.to_thread.run_sync(body)


async def test_rbac_and_auth_errors(api: SandboxApi, tmp_path: Path) -> None:
    dev = await _kube(api, "developer")
    with pytest.raises(RbacDenied) as info:
        await anyio.to_thread.run_sync(dev.create, "v1", "ConfigMap", _cm("x"))
    assert info.value.title == "Not allowed to create configmaps in namespace 'demo'"
    limited = await _kube(api, "limited")
    with pytest.raises(RbacDenied) as info:
        await anyio.to_thread.run_sync(limited.list, "apps/v1", "Deployment")
    assert info.value.title == "Not allowed to list deployments.apps cluster-wide"
    bad = write_kubeconfig(tmp_path / "bad", api.url, {"admin": "wrong-token"})
    kube = await anyio.to_thread.run_sync(Kube.from_kubeconfig, str(bad), None)
    with pytest.raises(RbacDenied) as info:
        await anyio.to_thread.run_sync(kube.list, "v1", "Pod", "demo")
    assert "rejected" in info.value.detail


async def test_unreachable(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_kubeconfig(tmp_path / "k", f"http://127.0.0.1:{port}", {"admin": "t"})
    kube = await anyio.to_thread.run_sync(Kube.from_kubeconfig, str(path), None)
    with anyio.fail_after(30), pytest.raises(ContextUnreachable) as info:
        await anyio.to_thread.run_sync(kube.version)
    assert f"127.0.0.1:{port}" in info.value.title
    assert "sandbox status" in info.value.hint


class _Collector:
    """Runs a watcher on a thread and records its events."""

    def __init__(self, kube: Kube, **kwargs: Any) -> None:
        self.watcher = kube.watch("v1", "ConfigMap", "demo", **kwargs)
        self.events: list[WatchEvent] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for event in self.watcher:
                self.events.append(event)
        except BaseException as exc:  # recorded for the test to see
            self.error = exc

    def names(self, kind: str) -> list[str]:
        return [e.object["metadata"]["name"] for e in self.events if e.type == kind]

    async def until(self, predicate: Any, timeout: float = 15) -> None:
        with anyio.fail_after(timeout):
            while not predicate():
                assert self.error is None, self.error
                await anyio.sleep(0.02)


async def test_watch_resume_relist_stop(api: SandboxApi) -> None:
    kube = await _kube(api)
    await anyio.to_thread.run_sync(kube.create, "v1", "ConfigMap", _cm("w0"))
    col = _Collector(kube, timeout_seconds=1)
    await col.until(lambda: any(e.type == "RELISTED" for e in col.events))
    assert [o["metadata"]["name"] for o in col.events[0].objects] == ["w0"]
    await anyio.to_thread.run_sync(kube.create, "v1", "ConfigMap", _cm("w1"))
    await anyio.to_thread.run_sync(
        kube.patch, "v1", "ConfigMap", "w1", {"data": {"a": "b"}}, "demo"
    )
    await col.until(lambda: col.names("MODIFIED") == ["w1"])
    # the server ends each stream after 1s; the watcher resumes without replaying
    opened = col.watcher.streams
    await col.until(lambda: col.watcher.streams >= opened + 2)
    await anyio.to_thread.run_sync(kube.create, "v1", "ConfigMap", _cm("w2"))
    await col.until(lambda: "w2" in col.names("ADDED"))
    assert col.names("ADDED") == ["w1", "w2"]
    assert col.names("MODIFIED") == ["w1"]
    await anyio.to_thread.run_sync(kube.delete, "v1", "ConfigMap", "w1", "demo")
    await col.until(lambda: col.names("DELETED") == ["w1"])
    assert col.names("ADDED").count("w1") == 1
    # compaction makes the next resume a 410: the watcher lists again
    relists = sum(e.type == "RELISTED" for e in col.events)
    api.cluster.compact()
    col.watcher.resource_version = "1"
    await col.until(lambda: sum(e.type == "RELISTED" for e in col.events) > relists)
    col.watcher.stop()
    await anyio.to_thread.run_sync(col.thread.join, 10)
    assert not col.thread.is_alive() and col.error is None
