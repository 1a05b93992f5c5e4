"""The manager end to end, in the sandbox (which enforces RBAC and calls webhooks).

Covers: install with only the manifests' permissions (the manager runs as its
own ServiceAccount) and its dry-run webhook proof; prepare injects agents on
rollout for a Deployment (named targetPort: app port renamed), a bare
ReplicaSet (pods replaced one at a time; numeric targetPort: the Service
repointed, with an undo record, and still serving) and a StatefulSet; the
proof catches a broken webhook and re-running install repairs it; uninstall
(even one not told the preview domain) leaves every object as it was before
an install with a preview domain (its Ingress and router port included; the
router answers on the Service's preview port). Team mode refuses a missing or
revoked key and accepts the admin key install printed; prepare says "the
webhook was not called" for a namespace the webhook skips, and names an
image that cannot be pulled.

The client API is reached on the manager pod's address, as a port-forward
would reach it (the sandbox gives each pod its own loopback address).
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from core.install import (
    MANAGER,
    WEBHOOK_CONFIG,
    InstallFailed,
    InstallOptions,
    install,
    prove_webhook,
    uninstall,
)
from core.kube import Kube
from core.protocol import (
    AGENT_CONTAINER,
    TARGET_PORT_UNDO_ANNOTATION,
    ClientWelcome,
    ErrorReply,
    Request,
)
from tests.manager.e2e import service, snapshot, wait_for, workload
from tests.manager.wsclient import Conn
from tests.sandbox.conftest import SandboxHandle

OPTS = InstallOptions(timeout=60)
PREVIEW_OPTS = InstallOptions(timeout=60, preview_domain="preview.example.test")


@pytest.fixture
def kube(sandbox: SandboxHandle) -> Iterator[Kube]:
    k = Kube.from_kubeconfig(str(sandbox.kubeconfig), context=sandbox.admin_context)
    yield k
    k.close()


@pytest.fixture(autouse=True)
def leave_no_install(kube: Kube) -> Iterator[None]:
    """Whatever a test did, waylay is gone after it (uninstall is idempotent)."""
    yield
    uninstall(kube, OPTS)


def manager_url(kube: Kube) -> str:
    def ready_ip() -> str | None:
        pods, _ = kube.list(
            "v1", "Pod", "waylay", label_selector=f"app.kubernetes.io/name={MANAGER}"
        )
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        return (live[0].get("status") or {}).get("podIP") if len(live) == 1 else None

    return f"http://{wait_for(ready_ip, what='the manager pod')}:8082/v1/client"


def spec(ns: str, name: str, kind: str = "Deployment", **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": ns,
        "workload": name,
        "workload_kind": kind,
        "service": name,
        "service_port": 8000,
        **kw,
    }


def pods_of(kube: Kube, ns: str, app: str) -> list[dict[str, Any]]:
    pods, _ = kube.list("v1", "Pod", ns, label_selector=f"app={app}")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def all_have_agents(kube: Kube, ns: str, app: str, replicas: int) -> bool:
    pods = pods_of(kube, ns, app)
    names = [[c["name"] for c in p["spec"]["containers"]] for p in pods]
    return len(pods) == replicas and all(AGENT_CONTAINER in n for n in names)


def http_status(url: str, host: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def http_get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


async def test_install_inject_every_kind_and_uninstall_leaves_nothing(
    kube: Kube, namespace: str, conns: list[Conn]
) -> None:
    ns = namespace
    for kind, name, target in (
        ("Deployment", "web", "http"),
        ("ReplicaSet", "bare", 8080),
        ("StatefulSet", "db", "http"),
    ):
        kube.create("apps/v1", kind, workload(kind, name, ns), ns)
        kube.create("v1", "Service", service(name, ns, target), ns)
    alt = service("web", ns, 8080)  # a second Service on web, numeric targetPort
    alt["metadata"]["name"] = "web-alt"
    alt["spec"]["ports"][0].update(name="alt", port=8001)
    kube.create("v1", "Service", alt, ns)
    for app in ("web", "bare", "db"):
        wait_for(lambda a=app: len(pods_of(kube, ns, a)) == 2, what=f"{app} pods")
    scope = {ns, "waylay", "default", "kube-system"}

    def scoped() -> dict[tuple[str, str, str], Any]:
        snap = snapshot(kube)
        return {
            k: v
            for k, v in snap.items()
            if (k[1] in scope or not k[1]) and (k[0] != "Namespace" or k[2] in scope)
        }

    wait_for(lambda: all(p["status"].get("phase") == "Running" for p in pods_of(kube, ns, "db")))
    before = scoped()

    result = await anyio.to_thread.run_sync(install, kube, PREVIEW_OPTS)
    assert not result.upgraded and result.proof_namespace == "default"
    assert kube.get("networking.k8s.io/v1", "Ingress", "waylay-preview", "waylay") is not None
    manager_svc = kube.get("v1", "Service", MANAGER, "waylay")
    assert manager_svc is not None
    status, page = await anyio.to_thread.run_sync(
        http_status,
        f"http://{manager_svc['spec']['clusterIP']}:8083/",
        "nobody.preview.example.test",
    )
    assert status == 404 and "Preview not available" in page  # the router, via its Service

    c = await Conn.open(manager_url(kube))
    conns.append(c)
    assert isinstance(await c.hello(), ClientWelcome)
    for kind, name in (("Deployment", "web"), ("ReplicaSet", "bare"), ("StatefulSet", "db")):
        with anyio.fail_after(90):
            done = await c.call("prepare", spec=spec(ns, name, kind))
        assert done.ok, done.error
        assert len(done.result["agents"]) == 2
        assert all_have_agents(kube, ns, name, 2), name
        steps = {e.data["step"] for e in c.events if e.kind == "progress"}
        assert "ready" in steps
    if True:  # the Deployment's named port was renamed on the app
        app = pods_of(kube, ns, "web")[0]["spec"]["containers"][0]
        assert app["ports"][0]["name"] == "wl-http"
    svc = kube.get("v1", "Service", "bare", ns)
    assert svc is not None
    assert svc["spec"]["ports"][0]["targetPort"] == "wla-8080"
    assert json.loads(svc["metadata"]["annotations"][TARGET_PORT_UNDO_ANNOTATION]) == {
        "8000/TCP": 8080
    }
    echoed = await anyio.to_thread.run_sync(http_get, f"http://{svc['spec']['clusterIP']}:8000/x")
    assert echoed["path"] == "/x"  # through the agent, to the app
    # Two clients prepare two ports of one Deployment at once: both get them.
    c2 = await Conn.open(manager_url(kube))
    conns.append(c2)
    assert isinstance(await c2.hello(client="bob@b"), ClientWelcome)
    answers: list[Any] = []

    async def prep(conn: Conn, wanted: dict[str, Any]) -> None:
        with anyio.fail_after(90):
            answers.append(await conn.call("prepare", spec=wanted))

    alt_spec = {**spec(ns, "web"), "name": "alt", "service": "web-alt", "service_port": 8001}
    async with anyio.create_task_group() as tg:
        tg.start_soon(prep, c2, alt_spec)
        tg.start_soon(prep, c, spec(ns, "web"))
    assert all(a.ok for a in answers), answers
    template = kube.get("apps/v1", "Deployment", "web", ns)["spec"]["template"]
    config = json.loads(template["metadata"]["annotations"]["waylay.dev/agent-config"])
    assert {p["service"] for p in config["ports"]} == {"web", "web-alt"}
    assert all_have_agents(kube, ns, "web", 2)

    created = await c.call("create", spec=spec(ns, "web"))
    assert created.ok and created.result["state"] == "active"

    # A broken webhook is caught by the proof; install again repairs it.
    kube.patch(
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        WEBHOOK_CONFIG,
        [{"op": "replace", "path": "/webhooks/0/clientConfig/service/port", "value": 9}],
        patch_type="json",
    )
    with pytest.raises(InstallFailed) as err:
        await anyio.to_thread.run_sync(lambda: prove_webhook(kube, OPTS, within=1.0))
    assert "does not work" in err.value.title
    again = await anyio.to_thread.run_sync(install, kube, PREVIEW_OPTS)
    assert again.upgraded

    await c.close()
    await anyio.to_thread.run_sync(uninstall, kube, OPTS)
    after: dict[tuple[str, str, str], Any] = {}

    def same() -> bool:
        nonlocal after
        after = scoped()
        return after == before

    with contextlib.suppress(AssertionError):
        wait_for(same, timeout=30)
    diff = {k: (before.get(k), after.get(k)) for k in before.keys() | after.keys()}
    assert {k: v for k, v in diff.items() if v[0] != v[1]} == {}


async def test_team_mode_and_why_agents_do_not_arrive(
    kube: Kube, namespace: str, conns: list[Conn]
) -> None:
    ns = namespace
    result = await anyio.to_thread.run_sync(install, kube, InstallOptions(timeout=60, team=True))
    assert result.admin_key
    try:
        url = manager_url(kube)
        for key in (None, "wl_0000_nope"):
            c = await Conn.open(url)
            conns.append(c)
            reply = await c.hello(api_key=key)
            assert isinstance(reply, ErrorReply) and reply.error.code == "unauthorized"
        admin = await Conn.open(url)
        conns.append(admin)
        welcome = await admin.hello(api_key=result.admin_key)
        assert isinstance(welcome, ClientWelcome) and welcome.identity == "admin"
        made = await admin.call("apikey-create", user="bob")
        bob = await Conn.open(url)
        conns.append(bob)
        assert isinstance(await bob.hello(api_key=made.result["key"]), ClientWelcome)
        assert (await admin.call("apikey-revoke", id=made.result["id"])).ok
        again = await Conn.open(url)
        conns.append(again)
        reply = await again.hello(api_key=made.result["key"])
        assert isinstance(reply, ErrorReply) and reply.error.code == "unauthorized"

        # An image that cannot be pulled is named.
        broken = workload("Deployment", "broken", ns, replicas=1)
        broken["spec"]["template"]["spec"]["containers"][0]["image"] = "example.com/nope:1"
        kube.create("apps/v1", "Deployment", broken, ns)
        kube.create("v1", "Service", service("broken", ns, "http"), ns)
        with anyio.fail_after(90):
            failed = await admin.call("prepare", spec=spec(ns, "broken"))
        assert not failed.ok and failed.error.code == "agent-not-arriving"
        assert "pulled" in failed.error.message and "example.com/nope" in failed.error.message

        # kube-system is skipped by the webhook: its pods roll without agents.
        kube.create("apps/v1", "Deployment", workload("Deployment", "skipped", "kube-system", 1))
        kube.create("v1", "Service", service("skipped", "kube-system", "http"))
        try:
            with anyio.fail_after(90):
                failed = await admin.call("prepare", spec=spec("kube-system", "skipped"))
            assert not failed.ok and failed.error.title == "The webhook was not called"
            assert "no waylay-agent container" in failed.error.message
        finally:
            kube.delete("apps/v1", "Deployment", "skipped", "kube-system")
            kube.delete("v1", "Service", "skipped", "kube-system")
    finally:
        await anyio.to_thread.run_sync(uninstall, kube, InstallOptions(timeout=60))


async def test_manager_killed_mid_rollout_picks_up_where_it_was(
    kube: Kube, namespace: str, conns: list[Conn]
) -> None:
    ns = namespace
    kube.create("apps/v1", "ReplicaSet", workload("ReplicaSet", "bare", ns, replicas=3), ns)
    kube.create("v1", "Service", service("bare", ns, "http"), ns)
    wait_for(lambda: len(pods_of(kube, ns, "bare")) == 3, what="bare pods")
    await anyio.to_thread.run_sync(install, kube, OPTS)
    try:
        c = await Conn.open(manager_url(kube))
        conns.append(c)
        welcome = await c.hello()
        assert isinstance(welcome, ClientWelcome)
        await c.send(Request(id=1, op="prepare", params={"spec": spec(ns, "bare", "ReplicaSet")}))
        await c.wait_event(lambda e: e.kind == "progress" and e.data["step"] == "replacing")
        old_pods, _ = kube.list("v1", "Pod", "waylay")
        for p in old_pods:  # the manager dies mid-rollout
            kube.delete("v1", "Pod", p["metadata"]["name"], "waylay")
        old_names = {p["metadata"]["name"] for p in old_pods}

        def new_manager() -> bool:
            pods, _ = kube.list("v1", "Pod", "waylay")
            return any(
                p["metadata"]["name"] not in old_names
                and any(
                    cond.get("type") == "Ready" and cond.get("status") == "True"
                    for cond in (p.get("status") or {}).get("conditions") or []
                )
                for p in pods
            )

        wait_for(new_manager, what="a new manager")
        again = await Conn.open(manager_url(kube))
        conns.append(again)
        resumed = await again.hello(session_id=welcome.session_id)
        assert isinstance(resumed, ClientWelcome) and resumed.session_id == welcome.session_id
        with anyio.fail_after(90):
            done = await again.call("prepare", spec=spec(ns, "bare", "ReplicaSet"))
        assert done.ok, done.error
        assert len(done.result["agents"]) == 3
        assert all_have_agents(kube, ns, "bare", 3)
    finally:
        await anyio.to_thread.run_sync(uninstall, kube, OPTS)
