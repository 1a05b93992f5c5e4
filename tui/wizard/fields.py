"""Validation of the wizard's text fields, as pure functions.

Each ``check_*`` takes what the user has typed so far and returns ``None`` when
it is acceptable or a short sentence saying what is wrong and what to type.
The wizard runs them on every keystroke; ``parse_*`` turn accepted text into
values for the intercept spec.
"""

from __future__ import annotations

import re

from core.protocol import AUTO_HEADER, PathRule

_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
AUTO = "auto"


def check_port(text: str) -> str | None:
    """A TCP port: 1-65535."""
    value = text.strip()
    if not value:
        return "type a port number (1-65535)"
    if not value.isdigit():
        return f"{value!r} is not a number: type a port such as 8080"
    port = int(value)
    if not 1 <= port <= 65535:
        return f"{port} is out of range: ports go from 1 to 65535"
    return None


def check_headers(text: str) -> str | None:
    """``auto``, or ``Name=value`` pairs separated by commas."""
    value = text.strip()
    if not value:
        return "type 'auto' or Name=value pairs separated by commas"
    if value == AUTO:
        return None
    for pair in value.split(","):
        name, sep, val = pair.strip().partition("=")
        if not sep:
            return f"{pair.strip()!r} needs '=': write Name=value, e.g. x-dev=alice"
        if not _HEADER_NAME.fullmatch(name.strip()):
            return f"{name.strip()!r} is not a valid header name"
        if not val.strip():
            return f"header {name.strip()!r} needs a value after '='"
    return None


def parse_headers(text: str, *, session_id: str, intercept: str) -> dict[str, str]:
    """The headers an accepted ``check_headers`` text stands for."""
    value = text.strip()
    if value == AUTO:
        return {AUTO_HEADER: f"{session_id}:{intercept}"}
    pairs = (pair.strip().partition("=") for pair in value.split(","))
    return {name.strip(): val.strip() for name, _, val in pairs}


def check_path(text: str) -> str | None:
    """A path prefix starting with ``/`` (``/`` matches every path)."""
    value = text.strip()
    if not value.startswith("/"):
        return "a path prefix starts with '/' ('/' matches every request)"
    if any(c.isspace() for c in value):
        return "a path cannot contain spaces"
    return None


def parse_path(text: str) -> PathRule:
    return PathRule(kind="prefix", value=text.strip())


def check_host(text: str) -> str | None:
    """A DNS name such as ``ingress-nginx.ingress`` or ``shop.example.com``."""
    value = text.strip().rstrip(".")
    if not value:
        return "type a host name, e.g. ingress-nginx.ingress-nginx"
    if ":" in value:
        return "type the port in the next step, not here"
    if len(value) > 253:
        return "a host name has at most 253 characters"
    for label in value.split("."):
        if not _HOST_LABEL.fullmatch(label):
            return f"{label!r} is not a valid DNS label (letters, digits and '-')"
    return None


def check_local_port(text: str, *, busy: frozenset[int] = frozenset()) -> str | None:
    """A port on this machine; ``busy`` lists ports other intercepts already use."""
    problem = check_port(text)
    if problem is None and int(text.strip()) in busy:
        return f"port {text.strip()} already receives another intercept: pick another"
    return problem
