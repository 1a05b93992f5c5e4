"""The import directions of DESIGN.md hold.

Covers: `core` loads without textual/rich/sandbox ever being imported; the
import-linter contracts in pyproject.toml are checked by `make imports`.
"""

from __future__ import annotations

import subprocess
import sys


def test_core_never_loads_textual_or_sandbox() -> None:
    code = (
        "import sys, pkgutil, importlib, core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in "
        "{'textual', 'rich', 'tui', 'sandbox', 'agent', 'webhook'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"core pulled in: {out}"
