"""Fixtures for core's tests: a real sandbox API server over HTTP, and one demo
sandbox (``python -m sandbox start --demo``, manager installed) shared by the
end-to-end modules of this package."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.core.apiserver import SandboxApi, serve_api
from tests.core.e2ekit import Demo, demo_sandbox

LAST = "test_e2e_team.py"
"""Switches the shared demo to team mode and uninstalls: runs after the other modules."""


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[SandboxApi]:
    async with serve_api(tmp_path) as server:
        yield server


@pytest.fixture(scope="package")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with demo_sandbox(tmp_path_factory.mktemp("e2e")) as box:
        yield box


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the team-mode module to the end of tests/core (not of the whole run: the
    shared demo is torn down when tests/core ends)."""
    last = [item for item in items if item.path.name == LAST]
    if not last:
        return
    rest = [item for item in items if item.path.name != LAST]
    here = last[0].path.parent
    ours = [n for n, item in enumerate(rest) if item.path.parent == here]
    cut = ours[-1] + 1 if ours else len(rest)
    items[:] = [*rest[:cut], *last, *rest[cut:]]
