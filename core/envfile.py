"""Writing an intercepted workload's environment for local tools.

Syntaxes (``--env-syntax``), as Telepresence names them:

- ``docker``: ``KEY=value`` for ``docker run --env-file`` (no quoting exists
  there, so multi-line values are left out with a comment saying so);
- ``compose``: a Compose ``.env`` file (single quotes when the value allows,
  else double quotes with escapes and ``$$``);
- ``sh``: ``export KEY='value'`` (POSIX shells: ``. file``);
- ``csh``: ``setenv KEY 'value'``;
- ``cmd``: ``set "KEY=value"`` for Windows ``cmd.exe`` batch files;
- ``ps``: ``$Env:KEY = 'value'`` for PowerShell.

``--env-json`` writes a JSON object instead.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, get_args

__all__ = ["SYNTAXES", "EnvSyntax", "render_env", "render_json", "write_env"]

EnvSyntax = Literal["docker", "compose", "sh", "csh", "cmd", "ps"]
SYNTAXES: tuple[str, ...] = get_args(EnvSyntax)

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _skip(comment: str, key: str, why: str) -> str:
    return f"{comment} {key} left out: {why}"


def _docker(key: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        return _skip("#", key, "docker --env-file cannot hold multi-line values")
    return f"{key}={value}"


def _compose(key: str, value: str) -> str:
    if "'" not in value and "\n" not in value:
        return f"{key}='{value}'"
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("$", "$$")
    )
    return f'{key}="{escaped}"'


def _sh(key: str, value: str) -> str:
    if not _IDENT.fullmatch(key):
        return _skip("#", key, "not a valid shell variable name")
    return "export {}='{}'".format(key, value.replace("'", "'\\''"))


def _csh(key: str, value: str) -> str:
    if not _IDENT.fullmatch(key):
        return _skip("#", key, "not a valid csh variable name")
    quoted = value.replace("'", "'\\''").replace("!", "\\!").replace("\n", "\\\n")
    return f"setenv {key} '{quoted}'"


def _cmd(key: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        return _skip("REM", key, "cmd.exe cannot set multi-line values")
    return 'set "{}={}"'.format(key, value.replace("%", "%%"))


def _ps(key: str, value: str) -> str:
    name = key if _IDENT.fullmatch(key) else "{" + key.replace("}", "`}") + "}"
    return "$Env:{} = '{}'".format(name, value.replace("'", "''"))


_RENDER: dict[str, Callable[[str, str], str]] = {
    "docker": _docker,
    "compose": _compose,
    "sh": _sh,
    "csh": _csh,
    "cmd": _cmd,
    "ps": _ps,
}


def render_env(env: Mapping[str, str], syntax: str = "docker") -> str:
    """The environment as a file in ``syntax`` (keys sorted, one per line)."""
    try:
        render = _RENDER[syntax]
    except KeyError:
        raise ValueError(f"unknown env syntax {syntax!r}: choose one of {', '.join(SYNTAXES)}")
    newline = "\r\n" if syntax == "cmd" else "\n"
    return "".join(render(k, env[k]) + newline for k in sorted(env))


def render_json(env: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(env.items())), indent=2) + "\n"


def write_env(
    env: Mapping[str, str],
    path: str | os.PathLike[str],
    syntax: str = "docker",
    *,
    as_json: bool = False,
) -> Path:
    """Write the file readable by its owner only (it often holds secrets)."""
    target = Path(path)
    text = render_json(env) if as_json else render_env(env, syntax)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="") as fh:
        fh.write(text)
    return target
