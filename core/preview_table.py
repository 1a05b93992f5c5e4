"""The live preview URLs: token -> intercept, target and headers.

Used by both servers (the workstation's and the manager's router). Each
token belongs to one intercept; ``end_intercept`` drops all of an intercept's
tokens at once, ``revoke`` one. A token that is not in the table is dead:
the servers answer 404 for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pydantic import ValidationError

from core.preview_models import PreviewEntry, PreviewError, PreviewTarget, new_token
from core.protocol import InterceptSpec

__all__ = ["PreviewTable", "intercept_headers"]

_REGEX_META = frozenset(".^$*+?{}[]\\|()")


def intercept_headers(
    spec: InterceptSpec, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The headers a preview of ``spec`` adds: the intercept's own, then ``extra``.

    A header the intercept matches by regular expression has no one value to
    send; the user must give one in ``extra``, else this raises PreviewError.
    """
    headers: dict[str, str] = {}
    extra_lower = {k.lower() for k in extra or {}}
    for name, value in spec.headers.items():
        if any(c in _REGEX_META for c in value):
            if name.lower() in extra_lower:
                continue
            raise PreviewError(
                f"Intercept {spec.name!r} matches header {name!r} by a pattern ({value!r})",
                f"Give the value the preview should send, e.g. --preview-header '{name}: VALUE'.",
            )
        headers[name] = value
    for name, value in (extra or {}).items():
        for known in [k for k in headers if k.lower() == name.lower()]:
            del headers[known]
        headers[name] = value
    if not headers and spec.is_global:
        return headers
    if not headers:
        raise PreviewError(
            f"Intercept {spec.name!r} matches no header",
            "A preview URL adds the intercept's header to each request; use a "
            "header-based personal intercept (--http-header=auto).",
        )
    return headers


class PreviewTable:
    """Token -> PreviewEntry, with the URL each token is served at."""

    def __init__(
        self,
        url_for: Callable[[str], str],
        on_dead: Callable[[list[PreviewEntry]], None] | None = None,
    ) -> None:
        """``on_dead`` is told of tokens that died (to end their open exchanges)."""
        self._url_for = url_for
        self._on_dead = on_dead
        self._entries: dict[str, PreviewEntry] = {}

    def add(
        self, intercept_id: str, target: PreviewTarget, headers: Mapping[str, str]
    ) -> PreviewEntry:
        token = new_token()
        try:
            entry = PreviewEntry(
                token=token,
                intercept_id=intercept_id,
                target=target,
                headers=dict(headers),
                url=self._url_for(token),
            )
        except ValidationError as exc:
            problems = "; ".join(str(e["msg"]) for e in exc.errors())
            raise PreviewError(
                "A preview cannot send these headers",
                "Use plain header names and one-line values; Host comes from the L5 hostname.",
                detail=problems,
            )
        self._entries[token] = entry
        return entry

    def get(self, token: str) -> PreviewEntry | None:
        return self._entries.get(token)

    def revoke(self, token: str) -> PreviewEntry | None:
        """Kill one URL; returns it, or None when it was not live."""
        entry = self._entries.pop(token, None)
        if entry is not None and self._on_dead is not None:
            self._on_dead([entry])
        return entry

    def end_intercept(self, intercept_id: str) -> list[PreviewEntry]:
        """Kill every URL of an intercept (it ended); returns them."""
        gone = [e for e in self._entries.values() if e.intercept_id == intercept_id]
        for entry in gone:
            del self._entries[entry.token]
        if gone and self._on_dead is not None:
            self._on_dead(gone)
        return gone

    def entries(self, intercept_id: str | None = None) -> list[PreviewEntry]:
        """The live URLs (of one intercept when given), oldest first."""
        items = [
            e
            for e in self._entries.values()
            if intercept_id is None or e.intercept_id == intercept_id
        ]
        return sorted(items, key=lambda e: e.created)
