"""HTTP/1 framing used for byte-exact relaying (agent.http1_parse, agent.source).

Covers: request heads (method, target, headers joined, keep-alive rules for
1.0/1.1, Upgrade/CONNECT, Expect: 100-continue); rejections with the right
status (400 malformed / no Host / TE+CL / bad Content-Length, 431 over 64 KiB);
response framing (HEAD/204/304/1xx without body, chunked, length,
close-delimited); hypothesis: the chunked scanner finds the same end however
the bytes are split, and never consumes bytes after the body; arbitrary bytes
make the parsers raise HttpError only; Source relays length/chunked bodies
exactly and leaves the next pipelined message in the buffer.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.http1_parse import (
    CHUNKED,
    NO_BODY,
    UNTIL_CLOSE,
    ChunkedScanner,
    HttpError,
    parse_request_head,
    parse_response_head,
)
from agent.source import Source


def test_request_heads() -> None:
    req = parse_request_head(
        b"POST /a?b=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n"
        b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    assert (req.method, req.target, req.body) == ("POST", "/a?b=1", 5)
    assert req.headers["x-a"] == "1, 2" and req.keep_alive and req.expect_continue
    old = parse_request_head(b"GET / HTTP/1.0\r\n\r\n")
    assert not old.keep_alive and old.body == 0
    assert parse_request_head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive
    ws = parse_request_head(
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    assert ws.upgrade
    assert parse_request_head(b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n").upgrade
    assert (
        parse_request_head(b"PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n").body
        == CHUNKED
    )


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nbad line\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    ],
)
def test_request_rejections(head: bytes, status: int) -> None:
    with pytest.raises(HttpError) as info:
        parse_request_head(head)
    assert info.value.status == status


def test_response_framing() -> None:
    assert parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", "GET").body == 3
    assert (
        parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", "HEAD").body == NO_BODY
    )
    assert parse_response_head(b"HTTP/1.1 204 No Content\r\n\r\n", "GET").body == NO_BODY
    assert parse_response_head(b"HTTP/1.1 100 Continue\r\n\r\n", "POST").body == NO_BODY
    chunked = parse_response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET")
    assert chunked.body == CHUNKED and chunked.keep_alive
    close = parse_response_head(b"HTTP/1.0 200 OK\r\n\r\n", "GET")
    assert close.body == UNTIL_CLOSE and not close.keep_alive
    with pytest.raises(HttpError) as info:
        parse_response_head(b"SSH-2.0-OpenSSH\r\n\r\n", "GET")
    assert info.value.status == 502


def _chunked(parts: list[bytes], trailers: bytes) -> bytes:
    out = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts if p)
    return out + b"0\r\n" + trailers + b"\r\n"


@settings(max_examples=200)
@given(
    parts=st.lists(st.binary(max_size=300), max_size=6),
    trailers=st.sampled_from([b"", b"grpc-status: 0\r\n", b"a: b\r\nc: d\r\n"]),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=8),
    after=st.binary(max_size=50),
)
def test_chunked_scanner_split_invariant(
    parts: list[bytes], trailers: bytes, cuts: list[int], after: bytes
) -> None:
    body = _chunked(parts, trailers)
    wire = body + after
    scanner = ChunkedScanner()
    consumed = 0
    points = sorted({c % (len(wire) + 1) for c in cuts} | {len(wire)})
    start = 0
    for point in points:
        piece = wire[start:point]
        start = point
        if scanner.done or not piece:
            continue
        used = scanner.feed(piece)
        consumed += used
        if scanner.done:
            break
    assert scanner.done and consumed == len(body)
    assert scanner.data_bytes == sum(len(p) for p in parts)


@given(st.binary(max_size=2000))
def test_parsers_only_raise_http_errors(data: bytes) -> None:
    for parse in (parse_request_head, lambda h: parse_response_head(h, "GET")):
        try:
            parse(data + b"\r\n\r\n")
        except HttpError:
            pass
    scanner = ChunkedScanner()
    try:
        scanner.feed(data)
    except HttpError:
        pass


async def test_source_relays_exactly_and_keeps_the_next_message() -> None:
    body = _chunked([b"hello", b" world"], b"x: y\r\n")
    wire = [
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + body[:7],
        body[7:] + b"GET /next",
    ]
    chunks = iter(wire)

    async def read() -> bytes:
        return next(chunks, b"")

    source = Source(read)
    head = await source.head()
    assert head is not None and parse_request_head(head).body == CHUNKED
    got: list[bytes] = []

    async def sink(data: bytes) -> None:
        got.append(data)

    assert await source.body(CHUNKED, sink) == len(body)
    assert b"".join(got) == body and bytes(source.buf) == b"GET /next"
