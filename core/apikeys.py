"""API keys and the manager's mode, as stored in the cluster.

Shared by ``waylay install`` (which writes the first admin key in team mode)
and the traffic manager (which issues, checks and revokes keys).

A key looks like ``wl_<id>_<secret>``; only ``sha256(secret)`` is stored, in
the Secret :data:`APIKEYS_SECRET` (one data entry per key id, JSON), next to
the user it names and whether it may administer. The plaintext is shown once,
when the key is issued. The mode (``single-user`` or ``team``) is the ``mode``
entry of the ConfigMap :data:`SETTINGS_CONFIGMAP`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

__all__ = [
    "APIKEYS_SECRET",
    "SETTINGS_CONFIGMAP",
    "ApiKeyRecord",
    "ManagerSettings",
    "Mode",
    "issue_key",
    "settings_from_objects",
    "verify_key",
]

Mode = Literal["single-user", "team"]
SETTINGS_CONFIGMAP = "waylay-settings"
APIKEYS_SECRET = "waylay-apikeys"


class ApiKeyRecord(BaseModel):
    """What is stored for one key (never the key itself)."""

    id: str
    user: str
    admin: bool = False
    sha256: str
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def public(self) -> dict[str, Any]:
        """What may be listed: no hash."""
        return {"id": self.id, "user": self.user, "admin": self.admin, "created": str(self.created)}

    def secret_entry(self) -> str:
        """The base64 value of this key's data entry in the Secret."""
        return base64.b64encode(self.model_dump_json().encode()).decode()


class ManagerSettings(BaseModel):
    mode: Mode = "single-user"
    keys: dict[str, ApiKeyRecord] = Field(default_factory=dict)


def issue_key(user: str, *, admin: bool = False) -> tuple[str, ApiKeyRecord]:
    """A new key: (plaintext to show once, record to store)."""
    if not user or any(c.isspace() for c in user):
        raise ValueError("a key needs a user name without spaces, e.g. --user alice")
    key_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(24)
    return f"wl_{key_id}_{secret}", ApiKeyRecord(
        id=key_id, user=user, admin=admin, sha256=_digest(secret)
    )


def verify_key(plaintext: str | None, keys: dict[str, ApiKeyRecord]) -> ApiKeyRecord | None:
    """The record the key belongs to, or None for a missing, malformed or revoked key."""
    if not plaintext:
        return None
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != "wl":
        return None
    record = keys.get(parts[1])
    if record is None or not hmac.compare_digest(record.sha256, _digest(parts[2])):
        return None
    return record


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def settings_from_objects(
    configmap: dict[str, Any] | None, secret: dict[str, Any] | None
) -> ManagerSettings:
    """Decode the ConfigMap and Secret; entries that don't parse are ignored."""
    mode = ((configmap or {}).get("data") or {}).get("mode", "single-user")
    keys: dict[str, ApiKeyRecord] = {}
    for key_id, value in ((secret or {}).get("data") or {}).items():
        with contextlib.suppress(ValueError, ValidationError):
            record = ApiKeyRecord.model_validate_json(base64.b64decode(value))
            if record.id == key_id:
                keys[key_id] = record
    return ManagerSettings(
        mode=mode if mode in ("single-user", "team") else "single-user", keys=keys
    )
