"""The data of preview URLs: prompts' defaults, where a preview goes, and its errors.

A preview URL is a token (>= 128 bits, DNS-label safe) bound to one intercept
and one ingress target; every request through it goes to that ingress with
the intercept's header(s) and any extra headers added.
"""

from __future__ import annotations

import re
import secrets
from base64 import b32encode
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import WaylayError

__all__ = [
    "TOKEN_RE",
    "PreviewDefaults",
    "PreviewEntry",
    "PreviewError",
    "PreviewTarget",
    "new_token",
]

TOKEN_RE = re.compile(r"[a-z2-7]{32}")
"""A preview token: 20 random bytes (160 bits) in lowercase base32."""

_HOSTISH = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_RESERVED_HEADERS = frozenset(
    {"host", "connection", "upgrade", "transfer-encoding", "content-length", "te", "keep-alive"}
)


def new_token() -> str:
    """An unguessable token that is also a valid DNS label."""
    return b32encode(secrets.token_bytes(20)).decode().lower()


class PreviewError(WaylayError):
    """A preview URL cannot be made or served as asked."""

    code = "preview"


class PreviewDefaults(BaseModel):
    """What detection proposes for the four preview prompts."""

    model_config = ConfigDict(frozen=True)

    host: str
    """The ingress: a Service as ``name.namespace``."""
    port: int
    """The ingress Service's port (443 for TLS, 80 otherwise)."""
    tls: bool
    """Whether to speak TLS to the ingress."""
    hostname: str
    """The L5 hostname: ``Host`` header and TLS SNI (from an Ingress rule when one routes
    to the intercepted Service, else ``host``)."""
    source: str = ""
    """Why these values: which Service and Ingress they came from (for the UI)."""


class PreviewTarget(BaseModel):
    """Where a preview's requests go: the user's answers to the four prompts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    """The ingress Service as ``name.namespace`` (or any host name it resolves to)."""
    port: int = Field(ge=1, le=65535)
    tls: bool = False
    hostname: str = ""
    """Host header and SNI; empty means ``host``."""

    @field_validator("host", "hostname")
    @classmethod
    def _hostish(cls, value: str) -> str:
        if value and not _HOSTISH.fullmatch(value):
            raise ValueError(f"{value!r} is not a host name (letters, digits, '-' and '.')")
        return value

    @property
    def l5_hostname(self) -> str:
        return self.hostname or self.host

    @property
    def is_service(self) -> bool:
        """``host`` names a Service: ``name.namespace`` (``.svc[.cluster.local]`` optional)."""
        host = self.host.removesuffix(".cluster.local").removesuffix(".svc")
        return host.count(".") == 1

    @property
    def service(self) -> tuple[str, str]:
        """(name, namespace) of the ingress Service named by ``host``."""
        name, _, namespace = self.host.partition(".")
        return name, (namespace.split(".", 1)[0] or "default")

    @classmethod
    def from_defaults(cls, defaults: PreviewDefaults) -> PreviewTarget:
        return cls(
            host=defaults.host, port=defaults.port, tls=defaults.tls, hostname=defaults.hostname
        )


class PreviewEntry(BaseModel):
    """One live preview URL."""

    token: str
    intercept_id: str
    """``<session>:<name>`` of the intercept it belongs to."""
    target: PreviewTarget
    headers: dict[str, str] = Field(default_factory=dict)
    """Added to every request (the intercept's header(s) plus the user's extras)."""
    url: str = ""
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("headers")
    @classmethod
    def _sendable(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"a preview cannot set {name!r} (the L5 hostname sets Host)")
            if any(c in value for c in "\r\n\0"):
                raise ValueError(f"the value of {name!r} has a line break or NUL")
        return headers
