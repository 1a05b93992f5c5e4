"""Errors read well and say what to do.

Covers: every concrete error has a non-empty title and hint; UnknownWorkload
suggests close names ("did you mean") and otherwise lists what exists;
SeveralServices and AmbiguousPort list the choices; RbacDenied names the
verb, resource and namespace; KeyringUnavailable names WAYLAY_API_KEY;
NothingListening is a warning; InvalidSpec points at file:line; to_dict
carries the stable code.
"""

from __future__ import annotations

from core import errors as e

SAMPLES: list[e.WaylayError] = [
    e.NoKubeconfig(["/nope/config"]),
    e.UnknownContext("sandbx", ["sandbox", "developer"]),
    e.ContextUnreachable("sandbox", "https://127.0.0.1:1", "refused"),
    e.RbacDenied("list", "deployments.apps", "demo"),
    e.KubeApiError(422, "Invalid", "bad"),
    e.UnknownWorkload("ordrs", "demo", ["orders", "ledger"]),
    e.NoMatchingService("orders", "demo"),
    e.SeveralServices("catalog", ["catalog", "catalog-admin"]),
    e.AmbiguousPort("catalog", ["http", "grpc"]),
    e.ManagerMissing("waylay"),
    e.VersionSkew("1.0", "2.0"),
    e.AgentNotArriving("orders", "ImagePullBackOff"),
    e.ManagerRefused("conflict", "Port taken", "alice holds it"),
    e.PortHeld(8080, "python (pid 42)"),
    e.NothingListening("127.0.0.1", 8080),
    e.KeyringUnavailable(),
    e.NotLoggedIn("sandbox"),
    e.DaemonUnavailable("/run/x.sock"),
    e.InvalidSpec("spec.yaml", 7, "bad port"),
]


def test_every_error_has_title_and_hint() -> None:
    for err in SAMPLES:
        assert err.title.strip(), type(err)
        assert err.hint.strip(), type(err)
        assert isinstance(err, e.WaylayError)
        assert err.title in str(err)


def test_unknown_workload_did_you_mean() -> None:
    err = e.UnknownWorkload("ordrs", "demo", ["orders", "ledger"])
    assert "Did you mean 'orders'" in err.hint
    assert err.suggestions == ["orders"]
    far = e.UnknownWorkload("zzz", "demo", ["orders", "ledger"])
    assert "ledger, orders" in far.hint


def test_listings() -> None:
    several = e.SeveralServices("catalog", ["catalog", "catalog-admin"])
    assert "catalog, catalog-admin" in several.title
    assert "--service catalog" in several.hint
    port = e.AmbiguousPort("catalog", ["http", "grpc"], asked="9")
    assert "no port '9'" in port.title and "http, grpc" in port.title


def test_rbac_names_verb_resource_namespace() -> None:
    err = e.RbacDenied("list", "deployments.apps", "demo")
    assert err.title == "Not allowed to list deployments.apps in namespace 'demo'"
    assert "cluster-wide" in e.RbacDenied("list", "namespaces").title


def test_keyring_hint_names_env_fallback() -> None:
    assert "WAYLAY_API_KEY" in e.KeyringUnavailable().hint


def test_severity_and_codes() -> None:
    assert e.NothingListening("127.0.0.1", 1).severity == "warning"
    assert e.PortHeld(1, "x").severity == "error"
    assert e.InvalidSpec("f", 3, "m").title.startswith("f:3:")
    assert e.VersionSkew("1.0", "2.0").to_dict()["code"] == "version-skew"
