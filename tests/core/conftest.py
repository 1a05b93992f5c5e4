"""Fixtures for core's tests: a real sandbox API server over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.core.apiserver import SandboxApi, serve_api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[SandboxApi]:
    async with serve_api(tmp_path) as server:
        yield server
