"""Fixtures: the sandbox ones (one real sandbox per test session) for the
end-to-end tests, and ``conns``, a list of API connections closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.manager.wsclient import Conn
from tests.sandbox.conftest import namespace, sandbox

__all__ = ["conns", "namespace", "sandbox"]


@pytest.fixture
async def conns() -> AsyncIterator[list[Conn]]:
    """Add each ``Conn`` a test opens; they are closed when it ends."""
    opened: list[Conn] = []
    yield opened
    for c in opened:
        await c.close()
