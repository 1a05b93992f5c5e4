"""Personal-intercept rules (agent.rules): matching, ordering, conflicts.

Covers: exact header values vs regular expressions (metacharacters); several
headers ANDed; `auto` expands to x-waylay-intercept-id: <session>:<name>;
path equal / prefix / regex with the query string ignored; header-filtered
rules are tried before path-only ones; unmatched requests get a reason naming
the failing condition; conflicts: global vs anything, subset rule sets,
identical rule sets; different header values coexist; the refusal names the
holder; a bad regex is reported, not raised at match time; hypothesis: matching
never raises on arbitrary targets/headers and an exact rule matches exactly
its own value.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.rules import compile_rule, conflict, is_regex, match, order, resolve, strip_query
from agent.state import InterceptTable
from core.protocol import AUTO_HEADER, PathRule, TakeoverPort
from tests.agent.conftest import OTHER, SESSION, intercept


def test_exact_regex_and_and() -> None:
    exact = compile_rule(intercept("a", headers={"X-Dev": "alice.b"}))
    assert is_regex("alice.b")  # '.' makes it a regex
    assert exact.check("/", {"x-dev": "aliceXb"}) is None
    plain = compile_rule(intercept("b", headers={"x-dev": "alice", "x-team": "blue"}))
    assert plain.check("/", {"x-dev": "alice", "x-team": "blue"}) is None
    assert plain.check("/", {"x-dev": "alice"}) == "header x-team missing"
    assert "wanted 'alice'" in (plain.check("/", {"x-dev": "alicex", "x-team": "blue"}) or "")


def test_auto_and_paths() -> None:
    auto = compile_rule(intercept("feat", headers={"auto": ""}))
    assert auto.check("/", {AUTO_HEADER: f"{SESSION}:feat"}) is None
    assert auto.check("/", {AUTO_HEADER: f"{OTHER}:feat"}) is not None
    also = compile_rule(intercept("feat", headers={AUTO_HEADER: "auto"}))
    assert also.check("/", {AUTO_HEADER: f"{SESSION}:feat"}) is None
    eq = compile_rule(intercept("e", path=PathRule(kind="equal", value="/api")))
    pre = compile_rule(intercept("p", path=PathRule(kind="prefix", value="/api/")))
    rx = compile_rule(intercept("r", path=PathRule(kind="regex", value=r"/v[0-9]+/.*")))
    assert eq.check(strip_query("/api?x=1"), {}) is None and eq.check("/api/x", {}) is not None
    assert pre.check(strip_query("/api/x?y"), {}) is None and pre.check("/apix", {}) is not None
    assert rx.check(strip_query("/v2/items?q"), {}) is None and rx.check("/x/v2/", {}) is not None


def test_order_and_reasons() -> None:
    path_only = compile_rule(intercept("p", path=PathRule(kind="prefix", value="/"), age=0))
    header = compile_rule(intercept("h", session=OTHER, headers={"x-dev": "bob"}, age=9))
    rules = order([path_only, header])
    assert rules[0] is header
    assert match(rules, "/x", {"x-dev": "bob"}).rule is header
    assert match(rules, "/x", {}).rule is path_only
    miss = match([header], "/x?a", {"x-dev": "eve"})
    assert miss.rule is None and "x-dev" in miss.reason and OTHER in miss.reason
    assert match([], "/", {}).reason == "no intercept on this port"


def test_conflicts() -> None:
    glob = intercept("g", mechanism="tcp")
    pers = intercept("p", session=OTHER, headers={"x-dev": "a"}, age=1)
    problem = conflict(glob, pers)
    assert problem is not None and problem.code == "conflict"
    assert "user-sess-a" in problem.message and glob.id in problem.message
    narrower = intercept("n", session=OTHER, headers={"x-dev": "a", "x-more": "1"}, age=2)
    holder = intercept("h", headers={"x-dev": "a"})
    assert conflict(holder, narrower) is not None  # subset
    assert conflict(holder, intercept("s", session=OTHER, headers={"x-dev": "a"})) is not None
    assert conflict(holder, intercept("b", session=OTHER, headers={"x-dev": "b"})) is None
    assert conflict(holder, intercept("o", port=81, mechanism="tcp")) is None  # other port
    # prefix "/" is no condition: such a path-only intercept overlaps every personal one
    everything = intercept("all", session=OTHER, path=PathRule(kind="prefix", value="/"))
    assert conflict(holder, everything) is not None
    api = intercept("api", session=OTHER, path=PathRule(kind="prefix", value="/api"))
    assert conflict(holder, api) is None
    accepted, refused = resolve(
        [narrower, holder, intercept("b", session=OTHER, headers={"x-dev": "b"})]
    )
    assert [i.name for i in (x.spec for x in accepted)] == ["h", "b"]
    assert refused[0][0].spec.name == "n"


def test_table_refuses_bad_regex_and_routes_by_port() -> None:
    ports = [
        TakeoverPort(service="hello", service_port=80, app_container="a", app_port=1, agent_port=2),
        TakeoverPort(service="hello", service_port=81, app_container="a", app_port=3, agent_port=4),
    ]
    table = InterceptTable(ports)
    table.apply(
        [intercept("bad", headers={"x": "(unclosed"}), intercept("g", port=81, mechanism="tcp")]
    )
    assert table.plan(0).idle and table.plan(1).global_ is not None
    assert table.refused[0][1].code == "bad-rule"
    assert table.by_id(f"{SESSION}:g") is not None


_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@given(target=_text, headers=st.dictionaries(_text.map(str.lower), _text, max_size=5), value=_text)
def test_matching_never_raises(target: str, headers: dict[str, str], value: str) -> None:
    rules = []
    for i, kind in enumerate(("equal", "prefix", "regex")):
        try:
            rules.append(
                compile_rule(
                    intercept(
                        f"r{i}", headers={"x-h": value}, path=PathRule(kind=kind, value=value)
                    )
                )
            )
        except ValueError:
            pass  # a value that is not a valid regex is refused at compile time
    result = match(order(rules), target, headers)
    assert result.rule is not None or result.reason


@given(
    value=st.text(
        st.characters(min_codepoint=48, max_codepoint=122).filter(str.isalnum), min_size=1
    )
)
def test_exact_value_matches_itself_only(value: str) -> None:
    rule = compile_rule(intercept("x", headers={"x-h": value}))
    assert rule.check("/", {"x-h": value}) is None
    assert rule.check("/", {"x-h": value + "z"}) is not None
