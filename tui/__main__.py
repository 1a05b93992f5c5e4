"""``python -m tui``: the waylay TUI."""

from __future__ import annotations

from tui.app import run

if __name__ == "__main__":
    run()
