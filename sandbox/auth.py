"""Who is calling: bearer-token authentication for the sandbox API server.

Two kinds of token are accepted, as on a real cluster:

- static user tokens, made fresh for each sandbox and written into its
  kubeconfig: ``admin`` (group ``system:masters``) and ``developer``;
- service-account tokens, issued by the kubelet for a pod's service account
  (``system:serviceaccount:NS:NAME``). They are HMAC-signed with the sandbox's
  secret, so they stay valid across a restart that reloads the same state.

The in-process callers (controllers, kubelet) use ``SYSTEM`` and never send a
token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ADMIN",
    "DEVELOPER",
    "SYSTEM",
    "Authenticator",
    "UserInfo",
    "service_account_user",
    "service_account_username",
]

AUTHENTICATED = "system:authenticated"
MASTERS = "system:masters"
_SA_PREFIX = "system:serviceaccount:"
_SA_TOKEN_PREFIX = "wlsa."


@dataclass(frozen=True)
class UserInfo:
    """An authenticated caller, as RBAC and admission webhooks see it."""

    name: str
    """``admin``, ``developer``, ``system:serviceaccount:NS:NAME``, ..."""
    groups: tuple[str, ...] = ()
    uid: str = ""

    def to_review(self) -> dict[str, object]:
        """The ``userInfo`` of an AdmissionReview request."""
        review: dict[str, object] = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            review["uid"] = self.uid
        return review

    @property
    def service_account(self) -> tuple[str, str] | None:
        """``(namespace, name)`` when this is a service account, else ``None``."""
        if not self.name.startswith(_SA_PREFIX):
            return None
        namespace, _, name = self.name[len(_SA_PREFIX) :].partition(":")
        return (namespace, name) if namespace and name else None


SYSTEM = UserInfo(name="system:apiserver", groups=(MASTERS, AUTHENTICATED))
"""Controllers and the kubelet: always allowed (``system:masters``)."""

ADMIN = UserInfo(name="admin", groups=(MASTERS, AUTHENTICATED))
DEVELOPER = UserInfo(name="developer", groups=(AUTHENTICATED,))
_STATIC_USERS: Mapping[str, UserInfo] = {u.name: u for u in (ADMIN, DEVELOPER)}


def service_account_username(namespace: str, name: str) -> str:
    return f"{_SA_PREFIX}{namespace}:{name}"


def service_account_user(namespace: str, name: str) -> UserInfo:
    return UserInfo(
        name=service_account_username(namespace, name),
        groups=("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


@dataclass
class Authenticator:
    """Maps ``Authorization: Bearer ...`` headers to a ``UserInfo`` (or ``None``: 401).

    ``service_account_exists``, when given, is asked on every service-account
    token: deleting the ServiceAccount revokes its tokens, as on a real cluster.
    """

    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    """Signs service-account tokens."""
    tokens: dict[str, str] = field(
        default_factory=lambda: {
            ADMIN.name: secrets.token_urlsafe(32),
            DEVELOPER.name: secrets.token_urlsafe(32),
        }
    )
    """User name -> static bearer token; the server writes these into the kubeconfig."""
    service_account_exists: Callable[[str, str], bool] | None = None

    # ------------------------------------------------------------------ tokens

    def token_for(self, user: str) -> str:
        """The static token of ``admin`` or ``developer``."""
        try:
            return self.tokens[user]
        except KeyError:
            raise KeyError(f"no static token for user {user!r}; known: {sorted(self.tokens)}")

    def issue_service_account_token(self, namespace: str, name: str) -> str:
        """A token that authenticates as ``system:serviceaccount:NAMESPACE:NAME``."""
        payload = _b64(json.dumps([namespace, name], separators=(",", ":")).encode())
        return f"{_SA_TOKEN_PREFIX}{payload}.{self._sign(payload)}"

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self.secret, payload.encode(), hashlib.sha256).digest())

    # ---------------------------------------------------------- authentication

    def authenticate(self, header: str | None) -> UserInfo | None:
        """The user behind an ``Authorization`` header value; ``None`` means 401."""
        token = _bearer(header)
        if token is None:
            return None
        if token.startswith(_SA_TOKEN_PREFIX):
            return self._service_account(token[len(_SA_TOKEN_PREFIX) :])
        for user, known in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return _STATIC_USERS.get(user, UserInfo(name=user, groups=(AUTHENTICATED,)))
        return None

    def _service_account(self, body: str) -> UserInfo | None:
        payload, _, signature = body.partition(".")
        if not hmac.compare_digest(self._sign(payload).encode(), signature.encode()):
            return None
        try:
            namespace, name = json.loads(_unb64(payload))
        except (ValueError, TypeError):
            return None
        if not (isinstance(namespace, str) and isinstance(name, str)):
            return None
        if self.service_account_exists is not None and not self.service_account_exists(
            namespace, name
        ):
            return None
        return service_account_user(namespace, name)

    # ------------------------------------------------------------ persistence

    def save(self, path: Path) -> None:
        """Write the secret and static tokens (mode 0600) so a restart keeps them."""
        data = {"secret": _b64(self.secret), "tokens": self.tokens}
        path.write_text(json.dumps(data, indent=2))
        path.chmod(0o600)

    @classmethod
    def load(
        cls, path: Path, *, service_account_exists: Callable[[str, str], bool] | None = None
    ) -> Authenticator:
        """Read what ``save`` wrote."""
        try:
            data = json.loads(path.read_text())
            return cls(
                secret=_unb64(data["secret"]),
                tokens=dict(data["tokens"]),
                service_account_exists=service_account_exists,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"cannot read sandbox credentials from {path}: {exc}; "
                "delete the sandbox directory and start it again"
            ) from exc
