"""How the CLI prints: aligned tables for people, JSON or YAML for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, Literal, TextIO

from core.errors import WaylayError

__all__ = ["Output", "print_error", "table", "to_data"]

Output = Literal["human", "json", "yaml"]


def to_data(value: Any) -> Any:
    """Models (and lists/dicts of them) as plain JSON-able data."""
    if hasattr(value, "model_dump"):  # a pydantic model (not imported: the CLI starts faster)
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, dict):
        return {k: to_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_data(v) for v in value]
    return value


def emit(value: Any, output: Output, human: str, out: TextIO | None = None) -> None:
    """Print ``human`` for people, or ``value`` as JSON/YAML for scripts."""
    stream = out or sys.stdout
    if output == "json":
        stream.write(json.dumps(to_data(value), indent=2) + "\n")
    elif output == "yaml":
        import yaml

        stream.write(yaml.safe_dump(to_data(value), sort_keys=False))
    else:
        stream.write(human if human.endswith("\n") or not human else human + "\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A left-aligned, space-separated table like kubectl's."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines) + "\n"


def print_error(err: WaylayError, output: Output = "human", out: TextIO | None = None) -> None:
    stream = out or sys.stderr
    if output != "human":
        emit({"error": err.to_dict()}, output, "", stream)
        return
    label = "Warning" if err.to_dict()["severity"] == "warning" else "Error"
    lines = [f"{label}: {err.title}"]
    if err.detail:
        lines += [f"  {line}" for line in err.detail.splitlines()]
    if err.hint:
        lines.append(f"  → {err.hint}")
    stream.write("\n".join(lines) + "\n")
