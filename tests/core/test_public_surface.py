"""The public surface of ``core`` is deliberate.

Covers: ``core.__all__`` is exactly the pinned list; every name resolves
(including the lazily loaded ``Discovery``); every exported error derives
from ``WaylayError``; importing ``core.protocol`` does not load the
``kubernetes`` client; only ``core.kube`` imports ``kubernetes``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import core

PINNED = [
    "AgentNotArriving",
    "AgentState",
    "AmbiguousPort",
    "Change",
    "ClusterError",
    "ContextInfo",
    "ContextUnreachable",
    "DaemonUnavailable",
    "Discovery",
    "InvalidSpec",
    "KeyringUnavailable",
    "KubeApiError",
    "LocalError",
    "ManagerError",
    "ManagerMissing",
    "ManagerRefused",
    "NamespaceInfo",
    "NoKubeconfig",
    "NoMatchingService",
    "NotLoggedIn",
    "NothingListening",
    "PortHeld",
    "RbacDenied",
    "ResolveError",
    "ServicePortInfo",
    "ServiceRef",
    "SeveralServices",
    "UnknownContext",
    "UnknownWorkload",
    "VersionSkew",
    "WaylayError",
    "WorkloadInfo",
    "WorkloadKind",
]


def test_all_is_pinned() -> None:
    assert core.__all__ == PINNED


def test_every_name_resolves() -> None:
    for name in core.__all__:
        assert getattr(core, name) is not None


def test_exported_errors_share_one_base() -> None:
    errors = [getattr(core, n) for n in core.__all__ if n.endswith(("Error",))]
    for cls in errors:
        assert issubclass(cls, core.WaylayError)


def test_protocol_does_not_load_the_kubernetes_client() -> None:
    code = "import sys, core.protocol; print('kubernetes' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == "False"


def test_only_kube_module_imports_kubernetes() -> None:
    root = Path(core.__file__).parent
    offenders = []
    for file in root.glob("*.py"):
        tree = ast.parse(file.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] == "kubernetes" for n in names) and file.name != "kube.py":
                offenders.append(file.name)
    assert offenders == []
