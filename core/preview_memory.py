"""Remembered preview answers: what a user answered last time, per workload.

Kept in ``$XDG_CONFIG_HOME/waylay/previews.json`` (``~/.config`` by default),
mode 0600, written atomically. Keys are ``context/namespace/kind/name``.
An unreadable or malformed file is treated as empty (and overwritten on the
next save), so it can never stop an intercept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from core.preview_models import PreviewDefaults, PreviewTarget

__all__ = ["PreviewMemory", "default_path", "workload_key"]


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(base) / "waylay" / "previews.json"


def workload_key(context: str, namespace: str, kind: str, name: str) -> str:
    return f"{context}/{namespace}/{kind}/{name}"


class _File(BaseModel):
    version: int = 1
    previews: dict[str, PreviewTarget] = Field(default_factory=dict)


class PreviewMemory:
    """Load and save remembered answers."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()

    def _load(self) -> _File:
        try:
            return _File.model_validate_json(self.path.read_bytes())
        except (OSError, ValueError, ValidationError):
            return _File()

    def recall(self, key: str) -> PreviewDefaults | None:
        """The answers saved for ``key``, as defaults for the prompts."""
        target = self._load().previews.get(key)
        if target is None:
            return None
        return PreviewDefaults(
            host=target.host,
            port=target.port,
            tls=target.tls,
            hostname=target.l5_hostname,
            source="your answers last time",
        )

    def remember(self, key: str, target: PreviewTarget) -> None:
        data = self._load()
        data.previews[key] = target
        self._save(data)

    def forget(self, key: str) -> bool:
        data = self._load()
        if data.previews.pop(key, None) is None:
            return False
        self._save(data)
        return True

    def _save(self, data: _File) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(data.model_dump(mode="json"), indent=2, sort_keys=True))
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)
