"""Passive request heads on a raw tunneled connection (global intercepts).

A global intercept carries each new connection down a tunnel stream byte for
byte; nothing is parsed on the way. To still show its requests live, the
client -> workstation direction is *watched* as it is copied:
:class:`RequestSniffer` is fed every chunk and reports each HTTP/1.x request
(its head, and its body's size once the body has passed). It never changes,
holds back or reorders a byte.

Bounded cost: only request heads are buffered (at most 64 KiB); bodies are
skipped by arithmetic (Content-Length) or by :class:`ChunkedScanner`. The
sniffer gives up for good, and costs nothing more, on the first thing it
cannot follow: bytes that are not an HTTP/1.x request, a malformed or
oversized head, or an ``Upgrade``/``CONNECT`` (the rest is opaque). Responses
are not parsed, so reported requests have no status.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.http1_parse import (
    CHUNKED,
    MAX_HEAD,
    ChunkedScanner,
    HttpError,
    RequestHead,
    parse_request_head,
)
from agent.switch import Verdict, classify

_END = b"\r\n\r\n"


@dataclass
class SeenRequest:
    head: RequestHead
    bytes_in: int
    """Head plus body, as the client sent them."""
    started: float
    """``time.monotonic()`` when the head was complete."""


class RequestSniffer:
    def __init__(self, on_request: Callable[[SeenRequest], None]) -> None:
        self._on_request = on_request
        self._head = bytearray()
        self._current: SeenRequest | None = None
        self._remaining = 0
        self._chunks: ChunkedScanner | None = None
        self.stopped = False
        """True once the sniffer has given up (the connection is not followable HTTP/1.x)."""
        self.seen = 0

    def feed(self, data: bytes) -> None:
        if self.stopped:
            return
        try:
            self._feed(memoryview(data))
        except HttpError:
            self.stopped = True

    def _feed(self, data: memoryview) -> None:
        while data and not self.stopped:
            data = self._take_head(data) if self._current is None else self._take_body(data)

    def _take_head(self, data: memoryview) -> memoryview:
        start = len(self._head)
        self._head += data
        # The end of the head may straddle the previous chunk.
        end = self._head.find(_END, max(0, start - 3))
        if end < 0:
            if len(self._head) > MAX_HEAD or classify(bytes(self._head[:8192])) is Verdict.RAW:
                self.stopped = True
            return data[len(data) :]
        end += len(_END)
        head = bytes(self._head[:end])
        rest = data[end - start :]
        self._head.clear()
        if classify(head) is not Verdict.HTTP:
            raise HttpError(400, "not an HTTP/1.x request")
        request = parse_request_head(head)
        self._current = SeenRequest(request, len(head), time.monotonic())
        if request.upgrade:
            self._done()
            self.stopped = True  # what follows is another protocol
            return rest[len(rest) :]
        if request.body == CHUNKED:
            self._chunks = ChunkedScanner()
        else:
            self._remaining = request.body
            if not self._remaining:
                self._done()
        return rest

    def _take_body(self, data: memoryview) -> memoryview:
        assert self._current is not None
        if self._chunks is not None:
            used = self._chunks.feed(bytes(data))
            self._current.bytes_in += used
            if self._chunks.done:
                self._chunks = None
                self._done()
            return data[used:]
        used = min(self._remaining, len(data))
        self._remaining -= used
        self._current.bytes_in += used
        if not self._remaining:
            self._done()
        return data[used:]

    def _done(self) -> None:
        seen, self._current = self._current, None
        assert seen is not None
        self.seen += 1
        self._on_request(seen)
