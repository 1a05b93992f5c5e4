"""Intercept specifications: a YAML file that ``waylay run FILE`` carries out.

It names the context and namespace, the workloads and their intercepts, and
optionally a handler command run with the intercepted environment::

    context: sandbox            # optional: the current context otherwise
    namespace: demo
    workloads:
      - name: orders
        intercepts:
          - port: http          # service port name or number
            local_port: 9000
            headers: auto       # personal; or {x-user: alice}; omit + global: true
            path_prefix: /api
    handler:
      command: [python, -m, http.server, "9000"]
      env_file: orders.env

Validated with pydantic; an error names the file and the line of the field
at fault. ``schema()`` is the JSON Schema (``waylay spec schema``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import InvalidSpec
from core.naming import is_dns_label

__all__ = [
    "HandlerSpec",
    "InterceptEntry",
    "Spec",
    "WorkloadEntry",
    "load_spec",
    "parse_spec",
    "schema",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InterceptEntry(_Strict):
    """One intercept of a workload."""

    name: str | None = None
    """The intercept's name; ``<workload>-<namespace>`` when omitted."""
    port: str | int | None = None
    """Service port name or number; may be omitted when the Service has one port."""
    service: str | None = None
    """Needed when several Services select the workload."""
    local_port: int = Field(8080, ge=1, le=65535)
    local_address: str = "127.0.0.1"
    global_: bool | None = Field(None, alias="global")
    """Take every connection (tcp). Default: the manager's mode decides."""
    headers: Literal["auto", "all"] | dict[str, str] | None = None
    """``auto`` (the intercept id header), ``all``, or header -> value/regex."""
    path_equal: str | None = None
    path_prefix: str | None = None
    path_regex: str | None = None
    preview_url: bool | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> InterceptEntry:
        paths = [p for p in (self.path_equal, self.path_prefix, self.path_regex) if p]
        if len(paths) > 1:
            raise ValueError("give at most one of path_equal, path_prefix, path_regex")
        if self.global_ and (self.headers not in (None, "all") or paths):
            raise ValueError("a global intercept takes every request: drop headers and paths")
        if self.name is not None and not is_dns_label(self.name):
            raise ValueError(f"name {self.name!r} is not a DNS label (lowercase, digits, '-')")
        return self


class WorkloadEntry(_Strict):
    name: str
    kind: Literal["Deployment", "ReplicaSet", "StatefulSet"] | None = None
    """Only needed when two workloads of different kinds share the name."""
    intercepts: list[InterceptEntry] = Field(min_length=1)


class HandlerSpec(_Strict):
    """A local command run with the intercepted environment; intercepts end with it."""

    command: list[str] | str
    """An argv list, or a string run by ``/bin/sh -c``; its exit code is ``waylay run``'s."""
    env_file: str | None = None
    """Where to write the environment (relative paths: to the spec file's directory)."""
    env_syntax: Literal["docker", "compose", "sh", "csh", "cmd", "ps"] = "docker"
    cwd: str | None = None
    """The command's directory (relative paths: to the spec file's directory)."""


class Spec(_Strict):
    """An intercept specification file."""

    context: str | None = None
    namespace: str | None = None
    """Default: the context's namespace."""
    workloads: list[WorkloadEntry] = Field(min_length=1)
    handler: HandlerSpec | None = None


def schema() -> dict[str, Any]:
    return Spec.model_json_schema(by_alias=True)


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the YAML node at pydantic location ``loc`` (or its nearest parent)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part) or (part == "global_" and key.value == "global"):
                    child = value
                    line = key.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            return line
        node = child
    return line


def parse_spec(text: str, file: str = "<spec>") -> Spec:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise InvalidSpec(file, line, f"not valid YAML: {getattr(exc, 'problem', exc)}")
    if not isinstance(data, dict):
        raise InvalidSpec(file, 1, "expected a mapping with at least 'workloads'")
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(
            p
            for p in first["loc"]
            if not (isinstance(p, str) and p.startswith(("dict[", "literal[")))
        )
        where = ".".join(str(p) for p in loc) or "(top)"
        raise InvalidSpec(file, _line_of(root, loc), f"{where}: {first['msg']}")


def load_spec(path: str | os.PathLike[str]) -> Spec:
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise InvalidSpec(str(file), None, f"cannot read it: {exc.strerror or exc}")
    return parse_spec(text, str(file))
