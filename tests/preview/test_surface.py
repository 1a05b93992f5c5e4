"""The public surface of ``core.preview``, pinned, and its layering.

Covers: ``core.preview.__all__`` is exactly the documented names and each
exists; importing it (and the manager's router) loads no UI library.
"""

from __future__ import annotations

import subprocess
import sys

import core.preview

EXPECTED = {
    "PREVIEW_INGRESS",
    "PREVIEW_PORT",
    "PortForwardDial",
    "PreviewDefaults",
    "PreviewEntry",
    "PreviewError",
    "PreviewMemory",
    "PreviewServer",
    "PreviewTable",
    "PreviewTarget",
    "create_cluster_preview",
    "detect_defaults",
    "end_with_intercepts",
    "ingress_candidates",
    "ingress_trust",
    "intercept_headers",
    "list_cluster_previews",
    "new_token",
    "preview_defaults",
    "preview_ingress_manifest",
    "preview_service_port",
    "propose_defaults",
    "revoke_cluster_preview",
    "run_workstation_previews",
    "workload_key",
}


def test_all_pinned() -> None:
    assert set(core.preview.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(core.preview, name) is not None


def test_no_ui_imported() -> None:
    code = (
        "import sys, core.preview, webhook.preview; "
        "bad = [m for m in ('textual', 'rich', 'tui', 'sandbox') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
