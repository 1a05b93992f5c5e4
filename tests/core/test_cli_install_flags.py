"""`waylay install` flags reach the manifests.

Covers: `--preview-domain`, `--preview-tls-secret` and `--preview-ingress-class`
on `install --dry-run -o json` add the `*.D` Ingress and the manager's preview
settings; without them there is no preview Ingress. No cluster is contacted.
"""

from __future__ import annotations

import json
import subprocess
import sys


def _dry_run(*flags: str) -> list[dict]:  # type: ignore[type-arg]
    out = subprocess.run(
        [sys.executable, "-m", "core.cli", "install", "--dry-run", "-o", "json", *flags],
        capture_output=True,
        text=True,
        check=True,
        env={"KUBECONFIG": "/nonexistent", "PATH": "/usr/bin:/bin"},
    ).stdout
    return json.loads(out)


def _ingresses(objects: list[dict]) -> list[dict]:  # type: ignore[type-arg]
    return [o for o in objects if o["kind"] == "Ingress"]


def test_preview_domain_adds_the_wildcard_ingress() -> None:
    objects = _dry_run(
        "--preview-domain",
        "pr.example.com",
        "--preview-tls-secret",
        "pr-tls",
        "--preview-ingress-class",
        "nginx",
    )
    (ingress,) = _ingresses(objects)
    assert ingress["spec"]["rules"][0]["host"] == "*.pr.example.com"
    assert ingress["spec"]["tls"][0]["secretName"] == "pr-tls"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    manager = next(o for o in objects if o["kind"] == "Deployment")
    env = {
        e["name"]: e.get("value")
        for e in manager["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["WAYLAY_PREVIEW_DOMAIN"] == "pr.example.com"


def test_without_a_domain_there_is_no_preview_ingress() -> None:
    assert _ingresses(_dry_run()) == []
