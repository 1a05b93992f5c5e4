"""Kubeconfig files: finding, merging, contexts, switching.

Covers: NoKubeconfig when nothing exists (and lists where it looked);
KUBECONFIG with two files merges with first-wins and takes current-context
from the first file that sets one; a context's namespace defaults to
"default" and its server comes from its cluster; switching writes the file
that owns current-context and refuses unknown names with a suggestion;
set_namespace updates the context in place.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core import config
from core.errors import NoKubeconfig, UnknownContext


def _kubeconfig(
    path: Path, current: str | None, contexts: dict[str, tuple[str, str | None]]
) -> Path:
    data: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": f"c-{name}", "cluster": {"server": f"https://{name}.example:6443"}}
            for name in contexts
        ],
        "users": [{"name": user, "user": {"token": "t"}} for user, _ in contexts.values()],
        "contexts": [
            {
                "name": name,
                "context": {"cluster": f"c-{name}", "user": user}
                | ({"namespace": ns} if ns else {}),
            }
            for name, (user, ns) in contexts.items()
        ],
    }
    if current:
        data["current-context"] = current
    path.write_text(yaml.safe_dump(data))
    return path


def test_no_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(NoKubeconfig) as info:
        config.kubeconfig_paths()
    assert str(tmp_path / "missing") in info.value.title


def test_merge_and_current(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _kubeconfig(tmp_path / "a", None, {"admin": ("admin", "demo")})
    b = _kubeconfig(tmp_path / "b", "dev", {"dev": ("dev", None), "admin": ("other", "x")})
    monkeypatch.setenv("KUBECONFIG", f"{a}:{b}")
    contexts = {c.name: c for c in config.list_contexts()}
    assert contexts["admin"].user == "admin"  # first file wins
    assert contexts["admin"].namespace == "demo"
    assert contexts["dev"].namespace == "default"
    assert contexts["dev"].server == "https://dev.example:6443"
    assert config.current_context().name == "dev"


def test_switch_writes_owner_of_current(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _kubeconfig(tmp_path / "a", None, {"admin": ("admin", None)})
    b = _kubeconfig(tmp_path / "b", "dev", {"dev": ("dev", None)})
    monkeypatch.setenv("KUBECONFIG", f"{a}:{b}")
    config.switch_context("admin")
    assert yaml.safe_load(b.read_text())["current-context"] == "admin"
    assert "current-context" not in yaml.safe_load(a.read_text())
    assert config.current_context().name == "admin"
    assert (b.stat().st_mode & 0o777) == 0o600


def test_unknown_context_suggests(tmp_path: Path) -> None:
    path = _kubeconfig(tmp_path / "k", "admin", {"admin": ("admin", None)})
    with pytest.raises(UnknownContext) as info:
        config.switch_context("admn", path)
    assert "Did you mean 'admin'" in info.value.hint


def test_set_namespace(tmp_path: Path) -> None:
    path = _kubeconfig(tmp_path / "k", "admin", {"admin": ("admin", None)})
    info = config.set_namespace("demo", path=path)
    assert info.namespace == "demo"
    assert config.get_context("admin", path).namespace == "demo"
