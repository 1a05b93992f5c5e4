"""The wizard's steps and checks, without a screen.

Covers: which steps are asked (service and port only when several, UDP skips
the HTTP steps, preview prompts only for personal intercepts with a preview);
mode defaults (team: personal + auto + preview; single-user: global);
detected ingress defaults and the TLS-dependent port default; every text field
rejects bad input with a sentence saying what to type; changing an earlier
answer drops answers that no longer apply; the spec built from the answers;
the header and curl lines; a workload without a Service cannot start.
"""

from __future__ import annotations

import pytest

from core.protocol import AUTO_HEADER
from tests.tui.fakes import demo_workloads
from tui.wizard import fields
from tui.wizard.plan import PreviewDefaults, Wizard, WizardError, curl_line, header_line

W = {w.name: w for w in demo_workloads()}
DETECTED = PreviewDefaults(host="ingress-nginx.ingress", port=443, tls=True, hostname="shop.test")


def ids(wizard: Wizard) -> list[str]:
    return [s.id for s in wizard.steps()]


def answer_all(wizard: Wizard, **answers: str) -> None:
    for step, value in answers.items():
        assert wizard.set(step, value) is None, step  # type: ignore[arg-type]


def test_single_port_single_service_single_user_asks_three_steps() -> None:
    wizard = Wizard(W["orders"], "single-user", "s1")
    assert ids(wizard) == ["local_port", "scope"]
    assert wizard.next_step().default == "80"  # type: ignore[union-attr]
    assert wizard.steps()[1].default == "global"


def test_numeric_target_port_is_the_local_default() -> None:
    wizard = Wizard(W["ledger"], "single-user", "s1")
    assert wizard.steps()[0].default == "8080"


def test_several_services_and_ports_are_asked_first() -> None:
    wizard = Wizard(W["catalog"], "team", "s1")
    assert ids(wizard)[:3] == ["service", "port", "local_port"]
    assert wizard.set("service", "catalog-admin") is None
    assert "port" not in ids(wizard)  # catalog-admin has a single port
    assert wizard.service_port.port == 8081


def test_team_mode_defaults_to_personal_with_preview_prompts() -> None:
    wizard = Wizard(W["orders"], "team", "s1", preview_defaults={"orders": DETECTED})
    assert ids(wizard) == [
        "local_port", "scope", "headers", "path", "preview",
        "ingress_host", "ingress_tls", "ingress_port", "hostname",
    ]  # fmt: skip
    defaults = {s.id: s.default for s in wizard.steps()}
    assert defaults["scope"] == "personal"
    assert defaults["headers"] == "auto"
    assert defaults["path"] == "/"
    assert defaults["preview"] == "yes"
    assert defaults["ingress_host"] == "ingress-nginx.ingress"
    assert defaults["ingress_tls"] == "yes"
    assert defaults["ingress_port"] == "443"
    assert defaults["hostname"] == "shop.test"


def test_port_default_follows_the_tls_answer() -> None:
    wizard = Wizard(W["orders"], "team", "s1")
    answer_all(wizard, local_port="8080", scope="personal", headers="auto", path="/", preview="yes")
    answer_all(wizard, ingress_host="ingress.example.test", ingress_tls="no")
    step = next(s for s in wizard.steps() if s.id == "ingress_port")
    assert step.default == "80"
    assert wizard.set("ingress_tls", "yes") is None
    step = next(s for s in wizard.steps() if s.id == "ingress_port")
    assert step.default == "443"
    hostname = next(s for s in wizard.steps() if s.id == "hostname")
    assert hostname.default == "ingress.example.test"


def test_udp_port_skips_http_questions() -> None:
    wizard = Wizard(W["statsd"], "team", "s1")
    assert ids(wizard) == ["local_port"]
    answer_all(wizard, local_port="8125")
    assert wizard.complete()
    spec = wizard.spec()
    assert spec.protocol == "UDP"
    assert spec.is_global


def test_going_global_drops_personal_answers() -> None:
    wizard = Wizard(W["orders"], "team", "s1")
    answer_all(wizard, local_port="9000", scope="personal", headers="x-dev=alice", path="/api")
    assert wizard.set("scope", "global") is None
    assert set(wizard.answers) == {"local_port", "scope"}
    assert wizard.complete()


def test_personal_spec_with_auto_header_and_preview() -> None:
    wizard = Wizard(W["orders"], "team", "sess-1", preview_defaults={"orders": DETECTED})
    answer_all(
        wizard, local_port="9000", scope="personal", headers="auto", path="/api", preview="yes",
        ingress_host="ingress-nginx.ingress", ingress_tls="yes", ingress_port="8443",
        hostname="shop.test",
    )  # fmt: skip
    assert wizard.complete()
    spec = wizard.spec()
    assert spec.name == "orders-shop"
    assert spec.mechanism == "http"
    assert spec.headers == {AUTO_HEADER: "sess-1:orders-shop"}
    assert spec.path is not None and (spec.path.kind, spec.path.value) == ("prefix", "/api")
    assert (spec.service, spec.service_port, spec.service_port_name) == ("orders", 80, "http")
    assert spec.local_port == 9000
    preview = wizard.preview()
    assert preview is not None and (preview.port, preview.tls) == (8443, True)


def test_explicit_headers_become_the_spec_headers() -> None:
    wizard = Wizard(W["orders"], "single-user", "s1")
    answer_all(wizard, local_port="8080", scope="personal", headers="x-dev=alice, x-team = blue")
    answer_all(wizard, path="/", preview="no")
    assert wizard.complete()
    assert wizard.spec().headers == {"x-dev": "alice", "x-team": "blue"}
    assert wizard.preview() is None


def test_invalid_answers_are_refused_with_a_reason() -> None:
    wizard = Wizard(W["orders"], "team", "s1", busy_local_ports=frozenset({9000}))
    assert "not a number" in (wizard.set("local_port", "80a") or "")
    assert "already receives" in (wizard.set("local_port", "9000") or "")
    assert "pick one of" in (wizard.set("scope", "sometimes") or "")
    assert "local_port" not in wizard.answers


@pytest.mark.parametrize(
    ("check", "text", "fragment"),
    [
        (fields.check_port, "", "type a port"),
        (fields.check_port, "0", "out of range"),
        (fields.check_port, "70000", "out of range"),
        (fields.check_headers, "x-dev", "needs '='"),
        (fields.check_headers, "x dev=1", "not a valid header name"),
        (fields.check_headers, "x-dev=", "needs a value"),
        (fields.check_path, "api", "starts with '/'"),
        (fields.check_path, "/a b", "spaces"),
        (fields.check_host, "", "type a host"),
        (fields.check_host, "ingress:443", "next step"),
        (fields.check_host, "bad_name.test", "not a valid DNS label"),
    ],
)
def test_field_checks_explain_the_problem(check, text: str, fragment: str) -> None:  # type: ignore[no-untyped-def]
    problem = check(text)
    assert problem is not None and fragment in problem


@pytest.mark.parametrize(
    ("check", "text"),
    [
        (fields.check_port, "8080"),
        (fields.check_headers, "auto"),
        (fields.check_headers, "x-dev=alice,x-b=2"),
        (fields.check_path, "/"),
        (fields.check_host, "ingress-nginx.ingress-nginx"),
    ],
)
def test_field_checks_accept_good_input(check, text: str) -> None:  # type: ignore[no-untyped-def]
    assert check(text) is None


def test_curl_and_header_lines() -> None:
    wizard = Wizard(W["orders"], "team", "s1")
    answer_all(wizard, local_port="8080", scope="personal", headers="x-dev=alice", path="/api")
    answer_all(wizard, preview="no")
    spec = wizard.spec()
    assert header_line(spec) == "x-dev: alice"
    assert curl_line(spec) == "curl -H 'x-dev: alice' http://orders.shop:80/api"
    assert curl_line(spec, "https://p-1.shop.test/") == "curl https://p-1.shop.test/api"
    wizard.set("scope", "global")
    assert header_line(wizard.spec()).startswith("none")


def test_workload_without_service_cannot_be_intercepted() -> None:
    with pytest.raises(WizardError) as caught:
        Wizard(W["batch"], "team", "s1")
    assert "No Service selects batch" in caught.value.title
    assert "selector" in caught.value.hint
