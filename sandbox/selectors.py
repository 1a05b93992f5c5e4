"""Label and field selectors, as the ``labelSelector``/``fieldSelector`` query parameters say.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``,
``a`` (exists), ``!a`` (does not exist), joined by commas. Field selectors:
``path=value``, ``path==value``, ``path!=value`` on dotted paths into the object
(``metadata.name``, ``metadata.namespace``, ``status.phase``, ``spec.nodeName``,
``involvedObject.name``, ...); a missing field compares as the empty string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sandbox.errors import bad_request

__all__ = [
    "FieldSelector",
    "LabelSelector",
    "format_label_selector",
    "match_label_selector",
]

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_SET_RE = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*$")
_CMP_RE = re.compile(rf"^\s*({_KEY})\s*(==|!=|=)\s*([-A-Za-z0-9_.]*)\s*$")
_EXISTS_RE = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")


@dataclass(frozen=True)
class _Requirement:
    key: str
    op: str  # "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "in":
            return self.key in labels and labels[self.key] in self.values
        return self.key not in labels or labels[self.key] not in self.values


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return [t for t in terms if t.strip()]


class LabelSelector:
    """A parsed ``labelSelector`` string."""

    def __init__(self, text: str | None) -> None:
        self.requirements: list[_Requirement] = []
        for term in _split_terms(text or ""):
            self.requirements.append(self._parse(term))

    @staticmethod
    def _parse(term: str) -> _Requirement:
        if m := _SET_RE.match(term):
            values = frozenset(v.strip() for v in m.group(4).split(",") if v.strip())
            return _Requirement(m.group(1), m.group(3), values)
        if m := _CMP_RE.match(term):
            op = "notin" if m.group(3) == "!=" else "in"
            return _Requirement(m.group(1), op, frozenset({m.group(4)}))
        if m := _EXISTS_RE.match(term):
            return _Requirement(m.group(2), "!exists" if m.group(1) else "exists")
        raise bad_request(f"unable to parse requirement: invalid label selector term {term!r}")

    def matches(self, obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(r.matches(labels) for r in self.requirements)

    def __bool__(self) -> bool:
        return bool(self.requirements)


class FieldSelector:
    """A parsed ``fieldSelector`` string."""

    def __init__(self, text: str | None) -> None:
        self.terms: list[tuple[str, bool, str]] = []  # (path, equal, value)
        for term in _split_terms(text or ""):
            if "!=" in term:
                path, value = term.split("!=", 1)
                self.terms.append((path.strip(), False, value.strip()))
            elif "=" in term:
                path, value = term.split("==", 1) if "==" in term else term.split("=", 1)
                self.terms.append((path.strip(), True, value.strip()))
            else:
                raise bad_request(f"invalid field selector: {term!r}: expected path=value")

    @staticmethod
    def _value(obj: dict[str, Any], path: str) -> str:
        cur: Any = obj
        for part in path.split("."):
            if not isinstance(cur, dict):
                return ""
            cur = cur.get(part)
        if cur is None:
            return ""
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return str(cur)

    def matches(self, obj: dict[str, Any]) -> bool:
        return all((self._value(obj, p) == v) == eq for p, eq, v in self.terms)

    def __bool__(self) -> bool:
        return bool(self.terms)


def match_label_selector(selector: dict[str, Any] | None, labels: dict[str, str] | None) -> bool:
    """Whether ``labels`` match a metav1 ``LabelSelector`` dict. An empty selector matches all."""
    selector = selector or {}
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        op = expr.get("operator", "")
        req = _Requirement(
            expr.get("key", ""),
            {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}.get(
                op, "in"
            ),
            frozenset(expr.get("values") or []),
        )
        if not req.matches(labels):
            return False
    return True


def format_label_selector(selector: dict[str, Any] | None) -> str:
    """A metav1 ``LabelSelector`` dict as a selector string (``Scale.status.selector``)."""
    selector = selector or {}
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        if op == "In":
            terms.append(f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            terms.append(f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            terms.append(key)
        elif op == "DoesNotExist":
            terms.append(f"!{key}")
    return ",".join(terms)
