"""The kubelet runs pods as local processes, as a real node would.

Covers: a pod gets its own loopback IP and two pods both listen on 8080; the
pod status (phase, conditions, containerStatuses) deserializes into the
``kubernetes`` client's ``V1Pod``; env from literals, fieldRef (labels,
annotations, podIP), configMapKeyRef, secretKeyRef, envFrom and ``$(VAR)``
expansion; a missing ConfigMap is ``CreateContainerConfigError``; readiness
probes gate Ready both ways; a failing liveness probe restarts the container
with ``Unhealthy`` and ``Killing`` events; a crash loop backs off with
doubling delays (``CrashLoopBackOff``, ``BackOff`` event); an unknown image is
``ErrImagePull``/``ImagePullBackOff`` with a Warning event; restartPolicy
Never ends in Succeeded/Failed; init containers run first, and one that fails
for good fails the pod; logs follow a run until it ends; a startup probe holds
back started and Ready; unsupported volumes give a Warning event;
a container that ignores SIGTERM is killed after its grace period; stopping
the kubelet leaves no process behind, grandchildren included; a sandbox
killed outright takes its containers' main processes along.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

from kubernetes.client import ApiClient

from tests.sandbox_runtime.conftest import Runtime
from tests.sandbox_runtime.helpers import (
    condition,
    container,
    container_status,
    events,
    http_get,
    pod,
    wait_for,
)


def _get(runtime: Runtime, name: str, namespace: str = "default") -> dict | None:
    return runtime.cluster.store.get("pods", namespace, name)


def _ready(runtime: Runtime, name: str) -> dict | None:
    obj = _get(runtime, name)
    return obj if condition(obj, "Ready") == "True" else None


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


async def test_pods_get_their_own_ip_and_both_listen_on_8080(runtime: Runtime) -> None:
    for name in ("a", "b"):
        await runtime.cluster.create("pods", pod(name))
    a = await wait_for(lambda: _ready(runtime, "a"), what="pod a Ready")
    b = await wait_for(lambda: _ready(runtime, "b"), what="pod b Ready")
    assert a["status"]["podIP"] != b["status"]["podIP"]
    await wait_for(
        lambda: (_get(runtime, "a") or {}).get("spec", {}).get("nodeName") == "sandbox",
        what="pod bound to the node",
    )
    for obj in (a, b):
        reply = await http_get(obj["status"]["podIP"], 8080, "/hello")
        assert f'"pod": "{obj["metadata"]["name"]}"'.encode() in reply
    v1pod = ApiClient()._ApiClient__deserialize(a, "V1Pod")
    status = v1pod.status.container_statuses[0]
    assert status.ready and status.started and status.image_id and status.container_id
    assert status.state.running.started_at is not None
    assert v1pod.status.phase == "Running"
    await runtime.kubelet.flush_events()
    reasons = [reason for _, reason, _ in events(runtime.cluster, "a")]
    assert reasons[:4] == ["Scheduled", "Pulled", "Created", "Started"]


async def test_env_from_every_source(runtime: Runtime) -> None:
    cluster = runtime.cluster
    await cluster.create(
        "configmaps",
        {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"color": "blue"}},
    )
    await cluster.create(
        "secrets",
        {"metadata": {"name": "sec", "namespace": "default"}, "stringData": {"token": "s3cret"}},
    )
    script = (
        "echo NAME=$MY_NAME; echo TEAM=$TEAM; echo OWNER=$OWNER; echo IP=$MY_IP; "
        "echo COLOR=$COLOR; echo TOKEN=$TOKEN; echo FROM=$CFG_color; echo GREETING=$GREETING; "
        "echo POD_IP=$POD_IP; echo WAYLAY_POD_IP=$WAYLAY_POD_IP"
    )
    spec = pod(
        "envy",
        container(
            "main",
            "waylay/toolbox",
            command=["sh", "-c", script],
            env=[
                {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {
                    "name": "TEAM",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}},
                },
                {
                    "name": "OWNER",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['owner']"}},
                },
                {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {
                    "name": "COLOR",
                    "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}},
                },
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
                {"name": "GREETING", "value": "hi $(MY_NAME)"},
            ],
            envFrom=[{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        ),
        restartPolicy="Never",
    )
    spec["metadata"]["annotations"] = {"owner": "team-a"}
    await cluster.create("pods", spec)
    done = await wait_for(
        lambda: (p := _get(runtime, "envy")) and p["status"].get("phase") == "Succeeded" and p,
        what="pod Succeeded",
    )
    stream = await runtime.kubelet.logs("default", "envy", None)  # awaitable, or iterate at once
    text = b"".join([chunk async for chunk in stream])
    ip = done["status"]["podIP"]
    for line in (
        "NAME=envy",
        "TEAM=envy",
        "OWNER=team-a",
        f"IP={ip}",
        "COLOR=blue",
        "TOKEN=s3cret",
        "FROM=blue",
        "GREETING=hi envy",
        f"POD_IP={ip}",
        f"WAYLAY_POD_IP={ip}",
    ):
        assert line.encode() in text.splitlines(), (line, text)
    terminated = container_status(done, "main")["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"


async def test_missing_configmap_is_a_config_error(runtime: Runtime) -> None:
    spec = pod(
        "nocfg",
        container(
            env=[{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}]
        ),
    )
    await runtime.cluster.create("pods", spec)
    waiting = await wait_for(
        lambda: container_status(_get(runtime, "nocfg"), "web").get("state", {}).get("waiting"),
        what="waiting state",
    )
    waiting = await wait_for(
        lambda: (
            (w := container_status(_get(runtime, "nocfg"), "web")["state"].get("waiting"))
            and w.get("reason") == "CreateContainerConfigError"
            and w
        ),
        what="CreateContainerConfigError",
    )
    assert waiting["message"] == 'configmap "absent" not found'


async def test_readiness_probe_gates_ready(runtime: Runtime) -> None:
    probe = {
        "exec": {"command": ["test", "-f", "ready"]},
        "periodSeconds": 1,
        "failureThreshold": 1,
    }
    await runtime.cluster.create("pods", pod("gated", container(readinessProbe=probe)))
    running = await wait_for(
        lambda: container_status(_get(runtime, "gated"), "web").get("state", {}).get("running"),
        what="running",
    )
    assert running
    assert condition(_get(runtime, "gated"), "Ready") == "False"
    workdir = runtime.kubelet.workers[_get(runtime, "gated")["metadata"]["uid"]].workdir
    (workdir / "ready").write_text("")
    await wait_for(lambda: _ready(runtime, "gated"), what="Ready after the probe passes")
    (workdir / "ready").unlink()
    await wait_for(
        lambda: condition(_get(runtime, "gated"), "Ready") == "False", what="not Ready again"
    )
    await runtime.kubelet.flush_events()
    assert any(r == "Unhealthy" for _, r, _ in events(runtime.cluster, "gated"))


async def test_failing_liveness_probe_restarts_the_container(runtime: Runtime) -> None:
    probe = {"tcpSocket": {"port": 9999}, "periodSeconds": 1, "failureThreshold": 2}
    spec = pod("sick", container(livenessProbe=probe), terminationGracePeriodSeconds=2)
    await runtime.cluster.create("pods", spec)
    await wait_for(
        lambda: container_status(_get(runtime, "sick"), "web").get("restartCount", 0) >= 1,
        timeout=20,
        what="a restart",
    )
    await runtime.kubelet.flush_events()
    seen = events(runtime.cluster, "sick")
    assert ("Normal", "Killing", "Container web failed liveness probe, will be restarted") in seen
    assert any(r == "Unhealthy" and "Liveness probe failed" in m for _, r, m in seen)
    last = container_status(_get(runtime, "sick"), "web")["lastState"]["terminated"]
    assert last["exitCode"] == 0  # the echo server shuts down cleanly on SIGTERM


async def test_crash_loop_backs_off_with_doubling_delays(runtime: Runtime) -> None:
    spec = pod(
        "crashy", container("main", "waylay/toolbox", command=["sh", "-c", "echo boom; exit 3"])
    )
    await runtime.cluster.create("pods", spec)
    seen: dict[int, float] = {}

    def restarts() -> bool:
        count = container_status(_get(runtime, "crashy"), "main").get("restartCount", 0)
        seen.setdefault(count, time.monotonic())
        return count >= 3

    await wait_for(restarts, timeout=20, what="three restarts")
    assert seen[3] - seen[2] > seen[2] - seen[1] >= 0.3
    status = await wait_for(
        lambda: (
            (s := container_status(_get(runtime, "crashy"), "main"))
            and s["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"
            and s
        ),
        what="CrashLoopBackOff",
    )
    assert "back-off" in status["state"]["waiting"]["message"]
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert _get(runtime, "crashy")["status"]["phase"] == "Running"
    await runtime.kubelet.flush_events()
    assert any(r == "BackOff" for _, r, _ in events(runtime.cluster, "crashy"))
    previous = b"".join(
        [c async for c in runtime.kubelet.logs("default", "crashy", "main", previous=True)]
    )
    assert previous == b"boom\n"


async def test_unknown_image_cannot_be_pulled(runtime: Runtime) -> None:
    await runtime.cluster.create("pods", pod("ghost", container(image="nginx:1.27")))
    await wait_for(
        lambda: (
            container_status(_get(runtime, "ghost"), "web")
            .get("state", {})
            .get("waiting", {})
            .get("reason")
            == "ImagePullBackOff"
        ),
        what="ImagePullBackOff",
    )
    obj = _get(runtime, "ghost")
    assert obj["status"]["phase"] == "Pending"
    await runtime.kubelet.flush_events()
    seen = events(runtime.cluster, "ghost")
    assert any(t == "Warning" and r == "Failed" and "nginx:1.27" in m for t, r, m in seen)
    assert ("Warning", "Failed", "Error: ErrImagePull") in seen


async def test_restart_policy_never_ends_in_failed(runtime: Runtime) -> None:
    spec = pod(
        "once",
        container("main", "waylay/toolbox", command=["sh", "-c", "exit 7"]),
        restartPolicy="Never",
    )
    await runtime.cluster.create("pods", spec)
    done = await wait_for(
        lambda: (p := _get(runtime, "once")) and p["status"].get("phase") == "Failed" and p,
        what="Failed",
    )
    assert container_status(done, "main")["state"]["terminated"]["exitCode"] == 7
    assert condition(done, "Ready") == "False"


async def test_unsupported_volumes_give_a_warning(runtime: Runtime) -> None:
    spec = pod("vols", volumes=[{"name": "data", "hostPath": {"path": "/var/data"}}])
    await runtime.cluster.create("pods", spec)
    await wait_for(lambda: _ready(runtime, "vols"), what="Ready")
    await runtime.kubelet.flush_events()
    assert any(
        t == "Warning" and r == "VolumeNotSupported" and '"data" (hostPath)' in m
        for t, r, m in events(runtime.cluster, "vols")
    )


async def test_sigterm_ignored_means_sigkill_after_grace(runtime: Runtime) -> None:
    spec = pod(
        "stubborn",
        container(
            "main", "waylay/toolbox", command=["sh", "-c", "trap '' TERM; echo up; sleep 300"]
        ),
        terminationGracePeriodSeconds=1,
    )
    await runtime.cluster.create("pods", spec)
    await wait_for(lambda: _ready(runtime, "stubborn"), what="Ready")
    uid = _get(runtime, "stubborn")["metadata"]["uid"]
    process = runtime.kubelet.workers[uid].containers[0].process
    assert process is not None and process.pid is not None
    members = _group_members(process.pid)
    assert len(members) >= 2  # sh and sleep
    await wait_for(lambda: _get(runtime, "stubborn")["spec"].get("nodeName"), what="bound")
    started = time.monotonic()
    await runtime.cluster.delete("pods", "default", "stubborn")
    terminating = _get(runtime, "stubborn")
    assert terminating is not None  # graceful: the kubelet removes it once stopped
    assert terminating["metadata"]["deletionGracePeriodSeconds"] == 1
    await wait_for(lambda: not any(_alive(p) for p in members), timeout=10, what="processes gone")
    assert time.monotonic() - started >= 0.9
    await wait_for(lambda: _get(runtime, "stubborn") is None, what="pod object removed")
    await wait_for(lambda: uid not in runtime.kubelet.workers, what="worker removed")
    await runtime.kubelet.flush_events()
    assert ("Normal", "Killing", "Stopping container main") in events(runtime.cluster, "stubborn")


async def test_stop_leaves_no_process_behind(runtime: Runtime) -> None:
    spec = pod(
        "family",
        container("main", "waylay/toolbox", command=["sh", "-c", "sleep 300 & sleep 300 & wait"]),
    )
    await runtime.cluster.create("pods", spec)
    await runtime.cluster.create("pods", pod("server"))
    await wait_for(lambda: _ready(runtime, "family") and _ready(runtime, "server"), what="Ready")
    pids: list[int] = []
    for worker in runtime.kubelet.workers.values():
        process = worker.containers[0].process
        assert process is not None and process.pid is not None
        pids.extend(_group_members(process.pid))
    assert len(pids) >= 4
    await runtime.kubelet.stop()
    await wait_for(lambda: not any(_alive(p) for p in pids), timeout=10, what="no process left")
    await asyncio.sleep(0)


async def test_logs_follow_until_the_run_ends(runtime: Runtime) -> None:
    script = "echo one; read line < ./go; echo two; exit 0"
    await runtime.cluster.create(
        "pods",
        pod(
            "chatty",
            container("main", "waylay/toolbox", command=["sh", "-c", f"mkfifo go; {script}"]),
            restartPolicy="Never",
        ),
    )
    await wait_for(
        lambda: container_status(_get(runtime, "chatty"), "main").get("state", {}).get("running"),
        what="running",
    )
    stream = runtime.kubelet.logs("default", "chatty", "main", follow=True)
    chunks = aiter(stream)
    first = await asyncio.wait_for(anext(chunks), 10)
    while first != b"one\n":  # the first read may race the echo
        first += await asyncio.wait_for(anext(chunks), 10)
    workdir = runtime.kubelet.workers[_get(runtime, "chatty")["metadata"]["uid"]].workdir
    await asyncio.to_thread((workdir / "go").write_text, "go\n")

    async def rest_of_log() -> bytes:
        return b"".join([chunk async for chunk in chunks])  # ends when the container exits

    rest = await asyncio.wait_for(rest_of_log(), 10)
    assert rest == b"two\n"


async def test_init_containers_run_first(runtime: Runtime) -> None:
    spec = pod(
        "initd",
        container("main", "waylay/toolbox", command=["sh", "-c", "cat made-by-init; sleep 300"]),
        initContainers=[
            container(
                "prepare", "waylay/toolbox", command=["sh", "-c", "echo prepared > made-by-init"]
            )
        ],
    )
    await runtime.cluster.create("pods", spec)
    ready = await wait_for(lambda: _ready(runtime, "initd"), what="Ready after init")
    init = ready["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["reason"] == "Completed"
    assert condition(ready, "Initialized") == "True"
    text = await wait_for(
        lambda: (
            runtime.kubelet.workers[ready["metadata"]["uid"]].containers[0].log_path(0).read_bytes()
        ),
        what="main container output",
    )
    assert text == b"prepared\n"


async def test_startup_probe_holds_back_started_and_ready(runtime: Runtime) -> None:
    startup = {
        "exec": {"command": ["test", "-f", "booted"]},
        "periodSeconds": 1,
        "failureThreshold": 30,
    }
    await runtime.cluster.create("pods", pod("slow", container(startupProbe=startup)))
    await wait_for(
        lambda: container_status(_get(runtime, "slow"), "web").get("state", {}).get("running"),
        what="running",
    )
    status = container_status(_get(runtime, "slow"), "web")
    assert status["started"] is False and status["ready"] is False
    workdir = runtime.kubelet.workers[_get(runtime, "slow")["metadata"]["uid"]].workdir
    (workdir / "booted").write_text("")
    await wait_for(lambda: _ready(runtime, "slow"), what="Ready after startup")
    assert container_status(_get(runtime, "slow"), "web")["started"] is True


async def test_failed_init_container_with_restart_never_fails_the_pod(runtime: Runtime) -> None:
    spec = pod(
        "badinit",
        container("main", "waylay/toolbox", command=["sh", "-c", "sleep 300"]),
        initContainers=[container("prepare", "waylay/toolbox", command=["sh", "-c", "exit 2"])],
        restartPolicy="Never",
    )
    await runtime.cluster.create("pods", spec)
    failed = await wait_for(
        lambda: (p := _get(runtime, "badinit")) and p["status"].get("phase") == "Failed" and p,
        what="Failed",
    )
    assert failed["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 2
    assert condition(failed, "Initialized") == "False"
    main = container_status(failed, "main")
    assert main["state"]["waiting"]["reason"] == "PodInitializing" and main["restartCount"] == 0


_ORPHAN_SCRIPT = """
import asyncio, sys, tempfile
from pathlib import Path
from sandbox.cluster import Cluster
from sandbox.kubelet import Kubelet, KubeletConfig

async def main():
    cluster = Cluster()
    await cluster.create("namespaces", {"metadata": {"name": "default"}})
    kubelet = Kubelet(cluster, cluster.ipam, KubeletConfig(state_dir=Path(tempfile.mkdtemp())))
    await kubelet.start()
    await cluster.create("pods", {"metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "waylay/toolbox",
                                 "command": ["python", "-c", "import time; time.sleep(300)"]}]}})
    while True:
        for worker in kubelet.workers.values():
            process = worker.containers[0].process
            if process is not None and process.pid:
                print(process.pid, flush=True)
                await asyncio.sleep(300)
        await asyncio.sleep(0.05)

asyncio.run(main())
"""


async def test_a_killed_sandbox_takes_its_containers_along() -> None:
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _ORPHAN_SCRIPT, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert parent.stdout is not None
        line = await asyncio.wait_for(parent.stdout.readline(), 30)
        child = int(line)
        assert _alive(child)
    finally:
        parent.send_signal(signal.SIGKILL)
        await parent.wait()
    await wait_for(lambda: not _alive(child), timeout=10, what="the container died with it")
