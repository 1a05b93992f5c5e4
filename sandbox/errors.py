"""The API server's one error type and the metav1 ``Status`` bodies it becomes.

Every failure the sandbox reports to a client is an :class:`ApiError`; the HTTP
layer turns it into the JSON ``Status`` a real kube-apiserver sends, and
controllers catch it by ``code``. The helpers below build the common ones with
the same ``reason`` and message wording as the real server, because clients
(kubectl, the ``kubernetes`` client) show those messages to people.

    ApiError
     ├── 400 BadRequest        bad_request()
     ├── 403 Forbidden         forbidden()
     ├── 404 NotFound          not_found()
     ├── 405 MethodNotAllowed  method_not_allowed()
     ├── 409 AlreadyExists     already_exists()
     ├── 409 Conflict          conflict()
     ├── 410 Expired           gone()
     ├── 415 UnsupportedMediaType
     └── 422 Invalid           invalid()
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApiError",
    "already_exists",
    "bad_request",
    "conflict",
    "forbidden",
    "gone",
    "invalid",
    "method_not_allowed",
    "not_found",
]


class ApiError(Exception):
    """A failure with the HTTP code, reason and message a real API server would send."""

    def __init__(
        self, code: int, reason: str, message: str, *, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        """The metav1 ``Status`` body for this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body

    def __repr__(self) -> str:
        return f"ApiError({self.code}, {self.reason!r}, {self.message!r})"


def _qualified(resource: str) -> tuple[str, str]:
    """Split a resource key ``plural.group`` into (plural, group)."""
    plural, _, group = resource.partition(".")
    return plural, group


def _details(resource: str, name: str, **extra: Any) -> dict[str, Any]:
    plural, group = _qualified(resource)
    details: dict[str, Any] = {"name": name, "kind": plural}
    if group:
        details["group"] = group
    details.update(extra)
    return details


def not_found(resource: str, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{resource} "{name}" not found', details=_details(resource, name)
    )


def already_exists(resource: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{resource} "{name}" already exists',
        details=_details(resource, name),
    )


def conflict(resource: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {resource} "{name}": {why}',
        details=_details(resource, name),
    )


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def forbidden(message: str, *, resource: str = "", name: str = "") -> ApiError:
    details = _details(resource, name) if resource else None
    return ApiError(403, "Forbidden", message, details=details)


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 Invalid. ``causes`` are ``(field, reason, message)`` triples.

    ``reason`` is one of the real server's cause types: ``FieldValueRequired``,
    ``FieldValueInvalid``, ``FieldValueNotSupported``, ``FieldValueDuplicate``.
    """
    qualified = f"{kind}.{group}" if group else kind
    summary = ", ".join(f"{field}: {message}" for field, _, message in causes)
    details: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "causes": [
            {"reason": reason, "message": message, "field": field}
            for field, reason, message in causes
        ],
    }
    if group:
        details["group"] = group
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {summary}', details=details)
