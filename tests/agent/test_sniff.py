"""The passive request watcher of raw tunneled connections (``agent.sniff``).

Covers: keep-alive requests with no body, Content-Length and chunked bodies
(with trailers) are each reported once, in order, with their method, target
and exact byte count, however the byte stream is cut into chunks
(hypothesis); non-HTTP bytes, a malformed head, an oversized head and an
``Upgrade`` make it give up for good (reporting nothing more); the reported
request's headers are the parsed ones; garbage never raises (hypothesis).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.http1_parse import MAX_HEAD
from agent.sniff import RequestSniffer, SeenRequest


def _sniff(*chunks: bytes) -> tuple[RequestSniffer, list[SeenRequest]]:
    seen: list[SeenRequest] = []
    sniffer = RequestSniffer(seen.append)
    for chunk in chunks:
        sniffer.feed(chunk)
    return sniffer, seen


def _request(i: int, kind: int, size: int) -> bytes:
    body = bytes([97 + i % 26]) * size
    if kind == 0:
        return b"GET /g%d?q=1 HTTP/1.1\r\nhost: h\r\nx-n: %d\r\n\r\n" % (i, i)
    if kind == 1:
        return b"POST /p%d HTTP/1.1\r\nhost: h\r\ncontent-length: %d\r\n\r\n%s" % (i, size, body)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:]) if part)
    return (
        b"PUT /c%d HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n%s0\r\nx-t: 1\r\n\r\n"
        % (i, chunks)
    )


_requests = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 300)), min_size=1, max_size=6)


@given(requests=_requests, cuts=st.lists(st.integers(1, 4000), max_size=10))
def test_requests_reported_once_whatever_the_chunks(
    requests: list[tuple[int, int]], cuts: list[int]
) -> None:
    wires = [_request(i, kind, size) for i, (kind, size) in enumerate(requests)]
    wire = b"".join(wires)
    points = sorted({c % len(wire) for c in cuts} - {0})
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    sniffer, seen = _sniff(*pieces)
    assert not sniffer.stopped
    assert [(s.head.method, s.head.target) for s in seen] == [
        (("GET", "POST", "PUT")[kind], f"/{'gpc'[kind]}{i}" + ("?q=1" if kind == 0 else ""))
        for i, (kind, _) in enumerate(requests)
    ]
    assert [s.bytes_in for s in seen] == [len(w) for w in wires]


def test_headers_are_reported() -> None:
    _, seen = _sniff(b"GET / HTTP/1.1\r\nHost: h\r\nX-Dev: alice\r\n\r\n")
    assert seen[0].head.headers == {"host": "h", "x-dev": "alice"}


def test_non_http_stops_at_once() -> None:
    sniffer, seen = _sniff(b"\x16\x03\x01\x02\x00", b"GET / HTTP/1.1\r\nhost: h\r\n\r\n")
    assert sniffer.stopped and seen == []


def test_malformed_head_stops() -> None:
    sniffer, seen = _sniff(b"GET / HTTP/1.1\r\nbad header\r\n\r\nGET / HTTP/1.1\r\nhost: h\r\n\r\n")
    assert sniffer.stopped and seen == []


def test_oversized_head_stops() -> None:
    sniffer, seen = _sniff(b"GET / HTTP/1.1\r\n", b"x-big: " + b"a" * MAX_HEAD)
    assert sniffer.stopped and seen == []


def test_upgrade_is_reported_then_stops() -> None:
    sniffer, seen = _sniff(
        b"GET /ws HTTP/1.1\r\nhost: h\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
        b"GET /not-a-request HTTP/1.1\r\nhost: h\r\n\r\n",
    )
    assert sniffer.stopped and [s.head.target for s in seen] == ["/ws"]


def test_bad_chunk_stops_after_the_head() -> None:
    sniffer, seen = _sniff(
        b"POST / HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"GET / HTTP/1.1\r\nhost: h\r\n\r\n",
    )
    assert sniffer.stopped and seen == []


@given(st.lists(st.binary(max_size=200), max_size=5))
def test_garbage_never_raises(chunks: list[bytes]) -> None:
    _sniff(*chunks)
