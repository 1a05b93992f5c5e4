"""API keys for team-mode managers: one per kubeconfig context, kept in the keyring.

``WAYLAY_API_KEY`` in the environment wins when set (CI, containers, machines
without a keyring); otherwise the key stored by ``waylay login`` for the
context is used. Keys travel as ``SecretStr`` and are never logged or printed.
"""

from __future__ import annotations

import os

import keyring
import keyring.errors
from pydantic import SecretStr

from core.errors import KeyringUnavailable

__all__ = ["ENV_VAR", "SERVICE", "delete_api_key", "get_api_key", "store_api_key"]

SERVICE = "waylay"
"""The keyring service name; the username is the kubeconfig context."""
ENV_VAR = "WAYLAY_API_KEY"


_USELESS_BACKENDS = ("keyring.backends.fail", "keyring.backends.null")


def _backend_usable() -> None:
    """The fail and null backends would lose the key: say so instead."""
    backend = keyring.get_keyring()
    if type(backend).__module__ in _USELESS_BACKENDS:
        raise KeyringUnavailable(f"the keyring backend is {type(backend).__module__}")


def get_api_key(context: str) -> SecretStr | None:
    """The key for ``context``: ``$WAYLAY_API_KEY``, else the keyring, else None."""
    env = os.environ.get(ENV_VAR)
    if env:
        return SecretStr(env)
    try:
        stored = keyring.get_password(SERVICE, context)
    except keyring.errors.KeyringError:
        return None  # no backend: only the environment can supply a key
    return SecretStr(stored) if stored else None


def store_api_key(context: str, key: SecretStr) -> None:
    """Remember ``key`` for ``context``; KeyringUnavailable names the fix."""
    try:
        _backend_usable()
        keyring.set_password(SERVICE, context, key.get_secret_value())
    except keyring.errors.KeyringError as exc:
        raise KeyringUnavailable(f"{type(exc).__name__}: {exc}")


def delete_api_key(context: str) -> bool:
    """Forget the key of ``context``; False when none was stored."""
    try:
        keyring.delete_password(SERVICE, context)
    except keyring.errors.PasswordDeleteError:
        return False
    except keyring.errors.KeyringError as exc:
        raise KeyringUnavailable(f"{type(exc).__name__}: {exc}")
    return True
