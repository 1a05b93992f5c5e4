"""Fixtures shared by the sandbox security tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.sandbox_security.webhook_server import WebhookServer, serve_webhook


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookServer]:
    """A real HTTPS webhook whose certificate names ``hook.waylay.svc`` and ``localhost``."""
    async with serve_webhook(["hook.waylay.svc", "localhost"]) as server:
        yield server
