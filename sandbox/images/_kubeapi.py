"""A small asynchronous Kubernetes API client for the demo programs.

It reads the kubeconfig the kubelet wrote for the pod's service account
(``$KUBECONFIG``), so every call is made, and RBAC-checked, as that service
account. ``Informer`` keeps a local copy of one resource: a list, then a watch
from the list's ``resourceVersion``, resumed from the last version seen when
the server ends the stream, and a fresh list after ``410 Gone``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

__all__ = ["Informer", "KubeApi"]

Obj = dict[str, Any]
_RETRY = 1.0


class KubeApi:
    """Calls the API server named by a kubeconfig's current context."""

    def __init__(self, kubeconfig: Path | None = None) -> None:
        path = kubeconfig or Path(os.environ.get("KUBECONFIG", ""))
        if not path or not path.is_file():
            raise SystemExit(
                "no kubeconfig: this program runs in a sandbox pod, where the kubelet sets "
                "$KUBECONFIG to the pod's service-account kubeconfig"
            )
        config = yaml.safe_load(path.read_text())
        current = config["current-context"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == current)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        self.server = str(cluster["server"]).rstrip("/")
        self._ssl = ssl.create_default_context()
        if cluster.get("certificate-authority-data"):
            ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
            self._ssl = ssl.create_default_context(cadata=ca)
        self._headers = {"Authorization": f"Bearer {user['token']}"} if user.get("token") else {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers, connector=aiohttp.TCPConnector(ssl=self._ssl)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, body: Obj | None = None) -> Obj:
        async with self.session.request(
            method, self.server + path, json=body, timeout=aiohttp.ClientTimeout(total=30)
        ) as response:
            data: Obj = await response.json(content_type=None)
            if response.status >= 400:
                raise ApiCallError(response.status, str(data.get("message", data)))
            return data


class ApiCallError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class Informer:
    """A watched local copy of one resource; ``on_change()`` after every change."""

    def __init__(self, api: KubeApi, path: str, on_change: Callable[[], None]) -> None:
        self.api = api
        self.path = path
        self.objects: dict[tuple[str, str], Obj] = {}
        self.synced = asyncio.Event()
        self._on_change = on_change

    @staticmethod
    def _key(obj: Obj) -> tuple[str, str]:
        meta = obj["metadata"]
        return str(meta.get("namespace", "")), str(meta["name"])

    async def run(self) -> None:
        while True:
            try:
                listed = await self.api.request("GET", self.path)
                self.objects = {self._key(o): o for o in listed.get("items") or []}
                self.synced.set()
                self._on_change()
                await self._watch(str(listed["metadata"].get("resourceVersion", "")))
            except (aiohttp.ClientError, ApiCallError, TimeoutError, KeyError, ValueError) as exc:
                print(f"watch {self.path}: {exc}; retrying", flush=True)
            await asyncio.sleep(_RETRY)

    async def _watch(self, version: str) -> None:
        """Follow changes until the list must be redone (410) or the connection fails."""
        while True:
            url = f"{self.api.server}{self.path}?watch=true&resourceVersion={version}"
            url += "&allowWatchBookmarks=true&timeoutSeconds=300"
            timeout = aiohttp.ClientTimeout(total=None, sock_read=400)
            async with self.api.session.get(url, timeout=timeout) as response:
                if response.status >= 400:
                    raise ApiCallError(response.status, await response.text())
                async for line in response.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            return
                        raise ApiCallError(int(obj.get("code", 500)), str(obj.get("message")))
                    version = str(obj.get("metadata", {}).get("resourceVersion", version))
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        self.objects.pop(self._key(obj), None)
                    else:
                        self.objects[self._key(obj)] = obj
                    with contextlib.suppress(Exception):
                        self._on_change()
