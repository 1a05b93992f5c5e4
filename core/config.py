"""Kubeconfig files: where they are, their contexts, the current one, switching.

Plain YAML reading (no ``kubernetes`` import): the same merge rules as kubectl
for ``KUBECONFIG=a:b``: the first file that defines a name wins, and the
current context comes from the first file that sets one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from core.errors import NoKubeconfig, UnknownContext
from core.models import ContextInfo

__all__ = [
    "current_context",
    "get_context",
    "kubeconfig_paths",
    "list_contexts",
    "load_merged",
    "resolve",
    "set_namespace",
    "switch_context",
]


def kubeconfig_paths(path: str | os.PathLike[str] | None = None) -> list[Path]:
    """The kubeconfig files in effect, in merge order; raises NoKubeconfig if none exist.

    ``path`` (may hold several, separated like ``KUBECONFIG``) wins over the
    ``KUBECONFIG`` environment variable, which wins over ``~/.kube/config``.
    """
    raw = os.fspath(path) if path is not None else os.environ.get("KUBECONFIG", "")
    candidates = [Path(p).expanduser() for p in raw.split(os.pathsep) if p]
    if not candidates:
        candidates = [Path("~/.kube/config").expanduser()]
    found = [p for p in candidates if p.is_file()]
    if not found:
        raise NoKubeconfig([str(p) for p in candidates])
    return found


def _read(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise NoKubeconfig([f"{path} (not a kubeconfig: expected a mapping)"])
    return data


def load_merged(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The merged kubeconfig as one dict (kubectl's merge rules)."""
    merged: dict[str, Any] = {"clusters": [], "contexts": [], "users": [], "current-context": ""}
    seen: dict[str, set[str]] = {"clusters": set(), "contexts": set(), "users": set()}
    for file in kubeconfig_paths(path):
        data = _read(file)
        if not merged["current-context"] and data.get("current-context"):
            merged["current-context"] = data["current-context"]
        for section in ("clusters", "contexts", "users"):
            for entry in data.get(section) or []:
                name = entry.get("name")
                if name and name not in seen[section]:
                    seen[section].add(name)
                    merged[section].append(entry)
    return merged


def _info(merged: dict[str, Any], entry: dict[str, Any]) -> ContextInfo:
    ctx = entry.get("context") or {}
    cluster_name = ctx.get("cluster", "")
    server = ""
    for cluster in merged["clusters"]:
        if cluster.get("name") == cluster_name:
            server = (cluster.get("cluster") or {}).get("server", "")
    return ContextInfo(
        name=entry["name"],
        cluster=cluster_name,
        user=ctx.get("user", ""),
        namespace=ctx.get("namespace") or "default",
        server=server,
    )


def list_contexts(path: str | os.PathLike[str] | None = None) -> list[ContextInfo]:
    merged = load_merged(path)
    return [_info(merged, entry) for entry in merged["contexts"]]


def get_context(name: str | None = None, path: str | os.PathLike[str] | None = None) -> ContextInfo:
    """The named context, or the current one; raises UnknownContext."""
    merged = load_merged(path)
    wanted = name or merged["current-context"]
    names = [e["name"] for e in merged["contexts"]]
    for entry in merged["contexts"]:
        if entry["name"] == wanted:
            return _info(merged, entry)
    if not wanted:
        raise UnknownContext("(no current-context)", names)
    raise UnknownContext(wanted, names)


def current_context(path: str | os.PathLike[str] | None = None) -> ContextInfo:
    return get_context(None, path)


def _owner_of_current(files: list[Path]) -> Path:
    for file in files:
        if _read(file).get("current-context"):
            return file
    return files[0]


def switch_context(name: str, path: str | os.PathLike[str] | None = None) -> ContextInfo:
    """Make ``name`` the current context (written where kubectl would write it)."""
    info = get_context(name, path)
    file = _owner_of_current(kubeconfig_paths(path))
    data = _read(file)
    data["current-context"] = name
    _write(file, data)
    return info


def set_namespace(
    namespace: str, context: str | None = None, path: str | os.PathLike[str] | None = None
) -> ContextInfo:
    """Set the default namespace of a context (the current one by default)."""
    info = get_context(context, path)
    for file in kubeconfig_paths(path):
        data = _read(file)
        for entry in data.get("contexts") or []:
            if entry.get("name") == info.name:
                entry.setdefault("context", {})["namespace"] = namespace
                _write(file, data)
                return info.model_copy(update={"namespace": namespace})
    raise UnknownContext(info.name, [])  # pragma: no cover - get_context found it


def _write(file: Path, data: dict[str, Any]) -> None:
    tmp = file.with_name(file.name + ".waylay-tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.chmod(tmp, 0o600)
    tmp.replace(file)


def resolve(
    context: str | None = None, path: str | os.PathLike[str] | None = None
) -> tuple[str, str]:
    """(context name, the kubeconfig files joined like KUBECONFIG), both explicit.

    The CLI hands these to the daemon so it uses exactly what the user meant,
    whatever environment the daemon was started in.
    """
    joined = os.pathsep.join(str(f) for f in kubeconfig_paths(path))
    return get_context(context, joined).name, joined
