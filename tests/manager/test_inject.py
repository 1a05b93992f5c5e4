"""The pure injector, ``webhook.inject.build_response``.

Covers: injection only for annotated pods owned by a ReplicaSet or StatefulSet;
opt-out annotation; OnDemand / WhenEnabled / Never policies; named-port takeover
(app port renamed to ``wl-<name>`` within 15 characters, probes rewritten, the
agent declaring the original name); numeric targetPort (agent declares
``wla-<port>``, app untouched); the agent container's image, env (config with
the manager's address, pod IP/name/namespace by fieldRef, app env copied under
the prefix with ``$(VAR)`` references and resourceFieldRef following, envFrom
prefixed), resources and a restricted security context; idempotence under
reinvocation; odd pods (no containers, unknown container, bad config, other
resources/operations) pass unchanged with a warning; arbitrary JSON never
raises.
"""

from __future__ import annotations

import json
from typing import Any

import jsonpatch  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from core.protocol import INJECT_ANNOTATION, AgentConfig
from tests.manager.pods import agent_config, named_port, numeric_port, pod, review
from webhook.inject import (
    AGENT_CONTAINER,
    InjectionPolicy,
    build_response,
    renamed_port_name,
)
from webhook.review import AdmissionReview

MANAGER = "waylay-manager.waylay:8081"


def run(obj: dict[str, Any] | None, policy: InjectionPolicy = InjectionPolicy.ON_DEMAND) -> Any:
    r = AdmissionReview.model_validate(review(obj))
    return build_response(
        review=r, manager_address=MANAGER, agent_image="waylay/agent:1", policy=policy
    )


def patched(
    obj: dict[str, Any], policy: InjectionPolicy = InjectionPolicy.ON_DEMAND
) -> dict[str, Any]:
    resp = run(obj, policy)
    assert resp.allowed and resp.uid == "uid-1"
    result: dict[str, Any] = jsonpatch.apply_patch(obj, resp.patch_ops())
    return result


def agent_of(p: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in p["spec"]["containers"] if c["name"] == AGENT_CONTAINER), None)


def test_named_port_takeover_renames_app_port_and_probes() -> None:
    out = patched(pod(agent_config(named_port())))
    app, agent = out["spec"]["containers"][0], agent_of(out)
    assert agent is not None
    assert app["ports"][0]["name"] == "wl-http"
    assert app["readinessProbe"]["httpGet"]["port"] == "wl-http"
    assert app["livenessProbe"]["tcpSocket"]["port"] == "wl-http"
    assert agent["ports"] == [{"name": "http", "containerPort": 9900, "protocol": "TCP"}]
    assert agent["image"] == "waylay/agent:1"


def test_agent_env_config_and_copied_app_env() -> None:
    agent = agent_of(patched(pod(agent_config(named_port()))))
    assert agent is not None
    env = {e["name"]: e for e in agent["env"]}
    config = AgentConfig.model_validate_json(env["WAYLAY_AGENT_CONFIG"]["value"])
    assert config.manager_address == MANAGER
    assert env["WAYLAY_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["WAYLAY_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["WAYLAY_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["WAYLAY_APP_ENV_GREETING"]["value"] == "hi"
    assert env["WAYLAY_APP_ENV_MESSAGE"]["value"] == "$(WAYLAY_APP_ENV_GREETING) there $$(GREETING)"
    ref = env["WAYLAY_APP_ENV_MEM"]["valueFrom"]["resourceFieldRef"]
    assert ref == {"resource": "limits.memory", "containerName": "app"}
    assert agent["envFrom"] == [{"configMapRef": {"name": "settings"}, "prefix": "WAYLAY_APP_ENV_"}]


def test_agent_resources_and_restricted_security_context() -> None:
    agent = agent_of(patched(pod(agent_config(named_port()))))
    assert agent is not None
    sc = agent["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert set(agent["resources"]) == {"requests", "limits"}
    # No init containers and no NET_ADMIN anywhere.
    out = patched(pod(agent_config(named_port())))
    assert "initContainers" not in out["spec"]
    assert "NET_ADMIN" not in json.dumps(out)


def test_numeric_target_port_leaves_app_alone() -> None:
    original = pod(agent_config(numeric_port()))
    out = patched(original)
    assert out["spec"]["containers"][0] == original["spec"]["containers"][0]
    agent = agent_of(out)
    assert agent is not None
    assert agent["ports"] == [{"name": "wla-8080", "containerPort": 9901, "protocol": "TCP"}]


def test_long_port_names_fit_in_15_characters() -> None:
    name = "very-long-name1"  # 15 chars already
    assert len(renamed_port_name(name)) <= 15
    containers = [
        {
            "name": "app",
            "ports": [
                {"name": name, "containerPort": 1},
                {"name": renamed_port_name(name), "containerPort": 2},
            ],
        }
    ]
    out = patched(pod(agent_config(named_port(name)), containers=containers))
    names = [p["name"] for p in out["spec"]["containers"][0]["ports"]]
    assert len(set(names)) == 2 and all(len(n) <= 15 for n in names)
    assert name not in names


def test_statefulset_pods_are_injected() -> None:
    assert agent_of(
        patched(pod(agent_config(named_port(), kind="StatefulSet"), owner_kind="StatefulSet"))
    )


def test_pods_without_annotation_or_right_owner_pass() -> None:
    assert run(pod(None)).patch is None
    for owner in (None, "Job", "DaemonSet"):
        resp = run(pod(agent_config(named_port()), owner_kind=owner))
        assert resp.allowed and resp.patch is None
        assert resp.warnings and "Deployment, ReplicaSet or StatefulSet" in resp.warnings[0]


def test_opt_out_and_policies() -> None:
    cfg = agent_config(named_port())
    assert run(pod(cfg, annotations={INJECT_ANNOTATION: "disabled"})).patch is None
    assert run(pod(cfg), InjectionPolicy.NEVER).patch is None
    assert run(pod(cfg), InjectionPolicy.WHEN_ENABLED).patch is None
    enabled = pod(cfg, annotations={INJECT_ANNOTATION: "enabled"})
    assert agent_of(patched(enabled, InjectionPolicy.WHEN_ENABLED))


def test_reinvocation_is_idempotent() -> None:
    once = patched(pod(agent_config(named_port())))
    resp = run(once)
    assert resp.allowed and resp.patch is None


def test_odd_pods_pass_with_a_warning() -> None:
    cases = [
        pod(agent_config(named_port()), containers=[]),
        pod(agent_config(named_port("nope"))),
        pod(agent_config(named_port().model_copy(update={"app_container": "ghost"}))),
    ]
    for obj in cases:
        resp = run(obj)
        assert resp.allowed and resp.patch is None and resp.warnings, obj
    bad = pod(None, annotations={"waylay.dev/agent-config": "{not json"})
    resp = run(bad)
    assert resp.patch is None and resp.warnings and "invalid" in resp.warnings[0]


def test_other_operations_and_resources_pass() -> None:
    r = review(pod(agent_config(named_port())), op="UPDATE")
    resp = build_response(
        review=AdmissionReview.model_validate(r), manager_address=MANAGER, agent_image="x"
    )
    assert resp.allowed and resp.patch is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    spec=st.dictionaries(
        st.sampled_from(["containers", "initContainers", "volumes"]), json_values, max_size=3
    ),
    meta=st.dictionaries(
        st.sampled_from(["annotations", "ownerReferences", "name"]), json_values, max_size=3
    ),
    keep_config=st.booleans(),
)
def test_arbitrary_pods_never_raise(
    spec: dict[str, Any], meta: dict[str, Any], keep_config: bool
) -> None:
    base = pod(agent_config(named_port()))
    annotations = base["metadata"]["annotations"]
    base["spec"].update(spec)
    base["metadata"].update(meta)
    if keep_config and isinstance(base["metadata"].get("annotations"), dict):
        base["metadata"]["annotations"].update(annotations)
    resp = run(base)
    assert resp.allowed
    if resp.patch:
        jsonpatch.apply_patch(base, resp.patch_ops())
