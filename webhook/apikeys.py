"""Where the manager keeps its mode and API keys (the format is ``core.apikeys``).

:class:`KubeSettingsStore` reads and writes the ConfigMap and Secret made at
install (the manager may touch those two objects and nothing else of their
kinds); :class:`MemorySettingsStore` holds them in the process (tests, and
runs without a cluster).
"""

from __future__ import annotations

from typing import Protocol

from core.apikeys import (
    APIKEYS_SECRET,
    SETTINGS_CONFIGMAP,
    ApiKeyRecord,
    ManagerSettings,
    Mode,
    issue_key,
    settings_from_objects,
    verify_key,
)
from webhook.kube import AsyncKube

__all__ = [
    "ApiKeyRecord",
    "KubeSettingsStore",
    "ManagerSettings",
    "MemorySettingsStore",
    "Mode",
    "SettingsStore",
    "issue_key",
    "verify_key",
]


class SettingsStore(Protocol):
    async def load(self) -> ManagerSettings: ...
    async def set_mode(self, mode: Mode) -> None: ...
    async def add_key(self, record: ApiKeyRecord) -> None: ...
    async def remove_key(self, key_id: str) -> bool: ...


class MemorySettingsStore:
    def __init__(self, settings: ManagerSettings | None = None) -> None:
        self.settings = settings or ManagerSettings()

    async def load(self) -> ManagerSettings:
        return self.settings.model_copy(deep=True)

    async def set_mode(self, mode: Mode) -> None:
        self.settings.mode = mode

    async def add_key(self, record: ApiKeyRecord) -> None:
        self.settings.keys[record.id] = record

    async def remove_key(self, key_id: str) -> bool:
        return self.settings.keys.pop(key_id, None) is not None


class KubeSettingsStore:
    """The ConfigMap ``waylay-settings`` and the Secret ``waylay-apikeys``."""

    def __init__(self, kube: AsyncKube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace

    async def load(self) -> ManagerSettings:
        cm = await self.kube.get("v1", "ConfigMap", SETTINGS_CONFIGMAP, self.namespace)
        secret = await self.kube.get("v1", "Secret", APIKEYS_SECRET, self.namespace)
        return settings_from_objects(cm, secret)

    async def set_mode(self, mode: Mode) -> None:
        await self.kube.patch(
            "v1", "ConfigMap", SETTINGS_CONFIGMAP, {"data": {"mode": mode}}, self.namespace
        )

    async def add_key(self, record: ApiKeyRecord) -> None:
        patch = {"data": {record.id: record.secret_entry()}}
        await self.kube.patch("v1", "Secret", APIKEYS_SECRET, patch, self.namespace)

    async def remove_key(self, key_id: str) -> bool:
        if key_id not in (await self.load()).keys:
            return False
        patch = {"data": {key_id: None}}
        await self.kube.patch("v1", "Secret", APIKEYS_SECRET, patch, self.namespace)
        return True
