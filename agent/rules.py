"""Personal-intercept rules: compiling, matching requests, and conflicts.

A personal intercept's rule set is a set of conditions, all of which must hold:

- headers: name -> value. The value is matched exactly, or as a regular
  expression (``re.fullmatch``) when it contains regex metacharacters. The
  header name ``auto`` (or the value ``auto`` for ``x-waylay-intercept-id``)
  stands for ``x-waylay-intercept-id: <session>:<intercept name>``.
- path: equal / prefix / regex (``re.fullmatch``), on the path without its
  query string (prefix ``/`` is no condition at all, as in the manager).

Ordering: header-filtered rules are tried before path-only ones (more header
conditions first, then oldest first). Two intercepts on one port conflict when
one is global, or when one's condition set is a subset of the other's
(different header values coexist).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from core.protocol import AUTO_HEADER, InterceptInfo, Problem

REGEX_META = frozenset(".^$*+?{}[]\\|()")

Condition = tuple[str, str, str]
"""("header", lowercase name, value) or ("path", kind, value)."""


def is_regex(value: str) -> bool:
    return any(c in REGEX_META for c in value)


def conditions(info: InterceptInfo) -> frozenset[Condition]:
    """The rule set of a personal intercept, with ``auto`` expanded."""
    spec = info.spec
    conds: set[Condition] = set()
    for name, value in spec.headers.items():
        lname = name.lower()
        if lname == "auto" or (lname == AUTO_HEADER and value == "auto"):
            conds.add(("header", AUTO_HEADER, f"{info.session_id}:{spec.name}"))
        else:
            conds.add(("header", lname, value))
    path = spec.path
    if path is not None and not (path.kind == "prefix" and path.value in ("", "/")):
        conds.add(("path", path.kind, path.value))  # prefix "/" matches everything: no condition
    return frozenset(conds)


@dataclass
class HeaderTest:
    name: str
    value: str
    pattern: re.Pattern[str] | None

    def check(self, headers: Mapping[str, str]) -> str | None:
        """None when it holds, else why not."""
        got = headers.get(self.name)
        if got is None:
            return f"header {self.name} missing"
        ok = self.pattern.fullmatch(got) is not None if self.pattern else got == self.value
        return None if ok else f"header {self.name} is {got!r}, wanted {self.value!r}"


@dataclass
class PathTest:
    kind: str
    value: str
    pattern: re.Pattern[str] | None

    def check(self, path: str) -> str | None:
        if self.kind == "equal":
            ok = path == self.value
        elif self.kind == "prefix":
            ok = path.startswith(self.value)
        else:
            assert self.pattern is not None
            ok = self.pattern.fullmatch(path) is not None
        return None if ok else f"path {path} does not match {self.kind} {self.value}"


@dataclass
class Rule:
    """One compiled personal intercept."""

    info: InterceptInfo
    headers: list[HeaderTest] = field(default_factory=list)
    path: PathTest | None = None

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def session_id(self) -> str:
        return self.info.session_id

    def check(self, path: str, headers: Mapping[str, str]) -> str | None:
        """None when the request matches, else the first reason it does not."""
        for test in self.headers:
            why = test.check(headers)
            if why:
                return why
        if self.path is not None:
            return self.path.check(path)
        return None


class RuleError(ValueError):
    """An intercept's rules cannot be compiled (bad regular expression)."""


def compile_rule(info: InterceptInfo) -> Rule:
    rule = Rule(info)
    for kind, a, b in sorted(conditions(info)):
        try:
            if kind == "header":
                rule.headers.append(HeaderTest(a, b, re.compile(b) if is_regex(b) else None))
            else:
                rule.path = PathTest(a, b, re.compile(b) if a == "regex" else None)
        except re.error as exc:
            raise RuleError(f"intercept {info.id}: bad regular expression {b!r}: {exc}") from exc
    return rule


def order(rules: Sequence[Rule]) -> list[Rule]:
    """Header-filtered first (more headers first), then oldest first."""
    return sorted(rules, key=lambda r: (-len(r.headers), r.info.created, r.id))


def strip_query(target: str) -> str:
    path = target.split("?", 1)[0].split("#", 1)[0]
    return path or "/"


@dataclass
class MatchResult:
    rule: Rule | None
    reason: str = ""


def match(rules: Sequence[Rule], target: str, headers: Mapping[str, str]) -> MatchResult:
    """First rule (in :func:`order`) that matches; else the reasons, per intercept.

    ``headers`` must have lowercase names. ``rules`` must already be ordered.
    """
    path = strip_query(target)
    reasons: list[str] = []
    for rule in rules:
        why = rule.check(path, headers)
        if why is None:
            return MatchResult(rule)
        reasons.append(f"{rule.id}: {why}")
    return MatchResult(None, "; ".join(reasons) if reasons else "no intercept on this port")


# ------------------------------------------------------------------- conflicts


def conflict(holder: InterceptInfo, newcomer: InterceptInfo) -> Problem | None:
    """Why ``newcomer`` may not share a port with ``holder`` (None when it may)."""
    a, b = holder.spec, newcomer.spec
    if (a.service, a.service_port, a.protocol) != (b.service, b.service_port, b.protocol):
        return None
    if a.is_global or b.is_global:
        what = "a global intercept" if a.is_global else "a personal intercept"
        return _problem(holder, newcomer, f"holds {what} on it")
    ca, cb = conditions(holder), conditions(newcomer)
    if ca <= cb or cb <= ca:
        return _problem(holder, newcomer, "has a personal intercept whose rules overlap yours")
    return None


def _problem(holder: InterceptInfo, newcomer: InterceptInfo, what: str) -> Problem:
    spec = newcomer.spec
    return Problem(
        code="conflict",
        title="Intercept conflict",
        message=(
            f"port {spec.service_port}/{spec.protocol} of service {spec.service} is taken: "
            f"{holder.owner} (intercept {holder.id}) {what}"
        ),
        hint="ask them to leave it, or use a personal intercept with different header values",
    )


def resolve(
    intercepts: Sequence[InterceptInfo],
) -> tuple[list[InterceptInfo], list[tuple[InterceptInfo, Problem]]]:
    """Split a snapshot into the intercepts applied (oldest wins) and those refused."""
    accepted: list[InterceptInfo] = []
    refused: list[tuple[InterceptInfo, Problem]] = []
    for info in sorted(intercepts, key=lambda i: (i.created, i.id)):
        problem = next((p for h in accepted if (p := conflict(h, info)) is not None), None)
        if problem is None:
            accepted.append(info)
        else:
            refused.append((info, problem))
    return accepted, refused
