"""The token table, the headers a preview adds, and following intercept events.

Covers:
- ``intercept_headers``: the intercept's literal headers; extra headers added
  and replacing same-named ones (any case); a regex header needs a value from
  the user (clear error otherwise); a personal intercept without headers
  cannot have a preview, a global one needs none;
- headers that cannot be sent (Host, bad names, line breaks) are refused;
- tokens: 160 random bits, DNS-label safe, distinct;
- ``end_with_intercepts``: ``removed``/``failed`` intercept events and a
  closed session kill the matching URLs and no others.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.preview_follow import end_with_intercepts
from core.preview_models import TOKEN_RE, PreviewError, PreviewTarget, new_token
from core.preview_table import PreviewTable, intercept_headers
from core.protocol import Event, InterceptSpec

TARGET = PreviewTarget(host="ingress.ingress", port=80)


def spec(headers: dict[str, str], mechanism: str = "http") -> InterceptSpec:
    return InterceptSpec(
        name="orders-shop",
        namespace="shop",
        workload="orders",
        service="orders",
        service_port=80,
        mechanism=mechanism,  # type: ignore[arg-type]
        headers=headers,
    )


def test_intercept_headers() -> None:
    assert intercept_headers(spec({"x-waylay-intercept-id": "s1:orders-shop"})) == {
        "x-waylay-intercept-id": "s1:orders-shop"
    }
    merged = intercept_headers(spec({"X-Env": "dev", "x-a": "1"}), {"x-env": "qa", "x-b": "2"})
    assert merged == {"x-a": "1", "x-env": "qa", "x-b": "2"}
    with pytest.raises(PreviewError) as err:
        intercept_headers(spec({"x-user": "alice|bob"}))
    assert "x-user" in err.value.title and "--preview-header" in err.value.hint
    assert intercept_headers(spec({"x-user": "a.*"}), {"X-User": "alice"}) == {"X-User": "alice"}
    with pytest.raises(PreviewError, match="matches no header"):
        intercept_headers(spec({}))
    assert intercept_headers(spec({}, mechanism="tcp")) == {}


def test_tokens() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(TOKEN_RE.fullmatch(t) and len(t) == 32 for t in tokens)


async def _events(*events: Event) -> AsyncIterator[Event]:
    for event in events:
        yield event


async def test_end_with_intercepts() -> None:
    table = PreviewTable(lambda token: f"http://{token}.preview.localhost/")
    a = table.add("s1:a", TARGET, {})
    b = table.add("s1:b", TARGET, {})
    c = table.add("s2:c", TARGET, {})
    d = table.add("s2:d", TARGET, {})
    e = table.add("s3:e", TARGET, {})
    await end_with_intercepts(
        table,
        _events(
            Event(kind="intercept", data={"id": "s1:a", "state": "active"}),
            Event(kind="progress", data={"message": "x"}),
            Event(kind="intercept", data={"id": "s1:b", "state": "removed"}),
            Event(kind="intercept", data={"id": "s3:e", "state": "failed"}),
            Event(kind="session", data={"id": "s2", "state": "closed"}),
        ),
    )
    assert [x.token for x in table.entries()] == [a.token]
    assert all(table.get(x.token) is None for x in (b, c, d, e))


def test_unsendable_headers_refused() -> None:
    table = PreviewTable(lambda token: token)
    for headers in ({"Host": "evil.test"}, {"bad name": "x"}, {"x-a": "1\r\nx-b: 2"}):
        with pytest.raises(PreviewError, match="cannot send these headers"):
            table.add("s1:a", TARGET, headers)
    assert table.entries() == []
