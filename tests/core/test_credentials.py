"""API keys per context, in the keyring, with WAYLAY_API_KEY as a fallback.

Covers: store/get/delete per context through a keyring backend (an
in-process backend implementing keyring's real backend interface); keys are
SecretStr and never show in repr; WAYLAY_API_KEY wins when set and is the
only source when no backend exists; storing with the fail or null backend
raises KeyringUnavailable that names WAYLAY_API_KEY.
"""

from __future__ import annotations

from collections.abc import Iterator

import keyring
import keyring.backend
import pytest
from keyring.backends import fail, null
from pydantic import SecretStr

from core.credentials import ENV_VAR, delete_api_key, get_api_key, store_api_key
from core.errors import KeyringUnavailable


class MemoryKeyring(keyring.backend.KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.store.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError("not found")


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryKeyring]:
    monkeypatch.delenv(ENV_VAR, raising=False)
    previous = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(previous)


def test_per_context(backend: MemoryKeyring) -> None:
    store_api_key("sandbox", SecretStr("k-sandbox"))
    store_api_key("prod", SecretStr("k-prod"))
    key = get_api_key("sandbox")
    assert key is not None and key.get_secret_value() == "k-sandbox"
    assert "k-sandbox" not in repr(key)
    assert get_api_key("other") is None
    assert delete_api_key("sandbox") is True
    assert delete_api_key("sandbox") is False
    assert get_api_key("sandbox") is None
    assert backend.store == {("waylay", "prod"): "k-prod"}


def test_env_wins(backend: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    store_api_key("sandbox", SecretStr("stored"))
    monkeypatch.setenv(ENV_VAR, "from-env")
    key = get_api_key("sandbox")
    assert key is not None and key.get_secret_value() == "from-env"


@pytest.mark.parametrize("useless", [fail.Keyring, null.Keyring])
def test_no_backend(monkeypatch: pytest.MonkeyPatch, useless: type) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    previous = keyring.get_keyring()
    keyring.set_keyring(useless())
    try:
        with pytest.raises(KeyringUnavailable) as info:
            store_api_key("sandbox", SecretStr("k"))
        assert "WAYLAY_API_KEY" in info.value.hint
        assert get_api_key("sandbox") is None
        monkeypatch.setenv(ENV_VAR, "env-key")
        key = get_api_key("sandbox")
        assert key is not None and key.get_secret_value() == "env-key"
    finally:
        keyring.set_keyring(previous)
