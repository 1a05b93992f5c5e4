"""Intercept specification files.

Covers: a full spec parses (global and personal entries, handler); errors
name the file and the YAML line of the field at fault (bad port number,
unknown key, wrong header type, conflicting global + headers, two path
rules); broken YAML reports its line; a missing file is InvalidSpec; the
JSON Schema documents the top-level keys and the `global` alias.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InvalidSpec
from core.spec import load_spec, parse_spec, schema

GOOD = """\
context: sandbox
namespace: demo
workloads:
  - name: orders
    intercepts:
      - port: http
        local_port: 9000
        headers: auto
        path_prefix: /api
  - name: ledger
    kind: Deployment
    intercepts:
      - global: true
        port: 80
handler:
  command: [python, -m, http.server, "9000"]
  env_file: orders.env
  env_syntax: sh
"""


def test_good_spec(tmp_path: Path) -> None:
    file = tmp_path / "spec.yaml"
    file.write_text(GOOD)
    spec = load_spec(file)
    assert spec.namespace == "demo"
    orders, ledger = spec.workloads
    assert orders.intercepts[0].headers == "auto"
    assert orders.intercepts[0].local_port == 9000
    assert ledger.intercepts[0].global_ is True
    assert ledger.intercepts[0].port == 80
    assert spec.handler is not None and spec.handler.env_syntax == "sh"


@pytest.mark.parametrize(
    ("replace", "by", "line", "needle"),
    [
        ("local_port: 9000", "local_port: 99999", 7, "local_port"),
        ("path_prefix: /api", "path_prefx: /api", 9, "path_prefx"),
        ("headers: auto", "headers: [a]", 8, "headers"),
        ("      - global: true", "      - global: true\n        headers: {a: b}", 13, "global"),
        ("path_prefix: /api", "path_prefix: /api\n        path_equal: /x", 6, "at most one"),
    ],
)
def test_errors_point_at_the_line(replace: str, by: str, line: int, needle: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_spec(GOOD.replace(replace, by), "spec.yaml")
    assert info.value.line == line, info.value.title
    assert info.value.title.startswith(f"spec.yaml:{line}:")
    assert needle in info.value.title
    assert "waylay spec schema" in info.value.hint


def test_broken_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_spec("workloads:\n  - name: [unclosed\n", "s.yaml")
    assert info.value.line is not None and "not valid YAML" in info.value.title
    with pytest.raises(InvalidSpec, match="cannot read"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(InvalidSpec, match="workloads"):
        parse_spec("namespace: demo\n", "s.yaml")


def test_schema() -> None:
    doc = schema()
    assert set(doc["properties"]) == {"context", "namespace", "workloads", "handler"}
    intercept = doc["$defs"]["InterceptEntry"]["properties"]
    assert "global" in intercept and "global_" not in intercept
