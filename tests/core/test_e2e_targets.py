"""End to end as the demo's read-only `developer` context (+ port-forward), the
manager installed by the admin: the awkward workloads and readable refusals.

Covers: `catalog` (two Services, two ports) without `--service` is a
SeveralServices error listing both; `--service catalog-canary` is honoured;
an ambiguous port lists the choices; `--port LOCAL:metrics` takes the metrics
port only (the http port still reaches the app); the StatefulSet `ledger`
whose Service has a numeric `targetPort` is intercepted by port number; the
bare ReplicaSet `legacy-billing` (raw TCP) is intercepted; a personal
path-prefix intercept on `orders` takes only matching paths; `leave` puts
each back on the app. `waylay install` as the developer fails with an
RbacDenied title naming verb and resource and a hint, no traceback (also as
`-o json`); `install --dry-run -o yaml|json` prints the manifests and changes
nothing in the cluster.
"""

from __future__ import annotations

import json

import yaml

from core.kube import Kube
from tests.core.e2ekit import (
    DEVELOPER,
    Demo,
    eventually,
    hit,
    local_server,
    tcp_read,
    tcp_server,
)

USER = "dev"


def dev(demo: Demo, *args: str, check: bool = True) -> tuple[int, str, str]:
    proc = demo.waylay(*args, "--context", DEVELOPER, user=USER, check=check)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def test_catalog_needs_service_and_port(demo: Demo) -> None:
    code, _, err = dev(demo, "intercept", "catalog", "-n", "shop", "--port", "1", check=False)
    assert code == 1
    assert "Several Services select 'catalog': catalog-canary, catalog-stable" in err
    assert "--service" in err
    code, _, err = dev(
        demo, "intercept", "catalog", "-n", "shop", "--service", "catalog-canary", check=False
    )
    assert code == 1 and "several ports: http, metrics" in err and "--port" in err
    code, _, err = dev(
        demo,
        "intercept",
        "catalog",
        "-n",
        "shop",
        "--service",
        "catalog-nope",
        "--port",
        "1:http",
        check=False,
    )
    assert code == 1 and "catalog-canary" in err and "catalog-stable" in err


def test_catalog_canary_metrics_port(demo: Demo) -> None:
    server, port = local_server("metrics")
    try:
        _, out, _ = dev(
            demo,
            "intercept",
            "catalog",
            "-n",
            "shop",
            "--service",
            "catalog-canary",
            "--port",
            f"{port}:metrics",
            "-o",
            "json",
        )
        spec = json.loads(out)["intercept"]["spec"]
        assert (spec["service"], spec["service_port_name"]) == ("catalog-canary", "metrics")
        metrics, http = (
            demo.service("catalog-canary", "metrics"),
            demo.service("catalog-canary", "http"),
        )
        assert [hit(metrics) for _ in range(6)] == ["local-metrics"] * 6
        assert hit(http) == "app"
        dev(demo, "leave", "catalog-shop")
        assert hit(metrics) == "app"
    finally:
        server.shutdown()


def test_ledger_numeric_target_port(demo: Demo) -> None:
    server, port = local_server("ledger")
    try:
        # the Service's targetPort is the number 8080; pick its port by number too
        dev(
            demo, "intercept", "ledger", "-n", "shop", "--service", "ledger", "--port", f"{port}:80"
        )
        target = demo.service("ledger", "http")
        assert [hit(target) for _ in range(6)] == ["local-ledger"] * 6
        dev(demo, "leave", "ledger-shop")
        eventually(lambda: hit(target) == "app", "ledger's traffic back on the app")
    finally:
        server.shutdown()


def test_bare_replicaset_tcp(demo: Demo) -> None:
    target = demo.service("legacy-billing", "tcp")
    app_greeting = tcp_read(target)
    with tcp_server(b"local-billing\n") as port:
        _, out, _ = dev(demo, "intercept", "legacy-billing", "-n", "shop", "--port", f"{port}:tcp")
        assert "ReplicaSet shop/legacy-billing" in out
        # the agent replaced the bare ReplicaSet's pod: the Service follows within moments
        eventually(lambda: tcp_read(target) == b"local-billing\n", "billing's traffic to local")
        assert [tcp_read(target) for _ in range(3)] == [b"local-billing\n"] * 3
        dev(demo, "leave", "legacy-billing-shop")
    assert tcp_read(target)[:5] == app_greeting[:5] and not app_greeting.startswith(b"local")


def test_path_prefix_personal(demo: Demo) -> None:
    server, port = local_server("api")
    try:
        _, out, _ = dev(
            demo,
            "intercept",
            "orders",
            "-n",
            "shop",
            "--port",
            str(port),
            "--http-path-prefix",
            "/api/",
        )
        assert "personal" in out and "path prefix /api/" in out
        assert [hit(demo.orders, path="/api/items") for _ in range(4)] == ["local-api"] * 4
        assert [hit(demo.orders, path="/other") for _ in range(4)] == ["app"] * 4
        dev(demo, "leave", "orders-shop")
        assert hit(demo.orders, path="/api/items") == "app"
    finally:
        server.shutdown()


def test_developer_install_is_refused_readably(demo: Demo) -> None:
    code, out, err = dev(demo, "install", check=False)
    assert code == 1 and out == ""
    [title] = [line for line in err.splitlines() if line.startswith("Error:")]
    assert title.startswith("Error: Not allowed to ") and " in namespace " in title
    assert "→ Ask a cluster admin for a Role granting" in err
    code, out, err = dev(demo, "install", "-o", "json", check=False)
    error = json.loads(err)["error"]
    assert code == 1 and error["code"] == "forbidden" and error["title"].startswith("Not allowed")


def test_install_dry_run_changes_nothing(demo: Demo) -> None:
    kube = Kube.from_kubeconfig(demo.env["KUBECONFIG"])
    try:
        manager = kube.get("apps/v1", "Deployment", "waylay-manager", "waylay")
        assert manager is not None
        before = manager["metadata"]["resourceVersion"]
        # the developer may not write anything: a dry run needs no write at all
        _, out, _ = dev(demo, "install", "--dry-run", "--team", "-o", "yaml")
        docs = [d for d in yaml.safe_load_all(out) if d]
        kinds = {d["kind"] for d in docs}
        assert {"Namespace", "Deployment", "Service", "MutatingWebhookConfiguration"} <= kinds
        _, out, _ = dev(demo, "install", "--dry-run", "-o", "json")
        assert {d["kind"] for d in json.loads(out)} == kinds
        after = kube.get("apps/v1", "Deployment", "waylay-manager", "waylay")
        assert after is not None and after["metadata"]["resourceVersion"] == before
    finally:
        kube.close()
