"""HTTP/1.x message heads and body framing, for relaying bytes unchanged.

The agent forwards requests and responses byte for byte; it only needs to
know where each message ends (Content-Length, chunked, or close-delimited),
whether the connection stays open, and the request's method, target and
headers for matching. Pure functions and one incremental chunked-body
scanner; everything malformed raises :class:`HttpError` with the status a
proxy answers (400, 431, 502).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_HEAD = 64 * 1024
MAX_CHUNK_LINE = 4096

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21-\x7e\x80-\xff]+")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class HttpError(Exception):
    """Malformed HTTP; ``status`` is what a proxy answers (400/431/502)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


NO_BODY = -1
CHUNKED = -2
UNTIL_CLOSE = -3


@dataclass
class RequestHead:
    method: str
    target: str
    version: bytes
    headers: dict[str, str] = field(default_factory=dict)
    """Lowercase name -> value (repeated headers joined with ", ")."""
    body: int = NO_BODY
    """A byte count, NO_BODY or CHUNKED."""
    keep_alive: bool = True
    upgrade: bool = False
    expect_continue: bool = False


@dataclass
class ResponseHead:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: int = NO_BODY
    """A byte count, NO_BODY, CHUNKED or UNTIL_CLOSE."""
    keep_alive: bool = True


def _fields(lines: list[bytes], status: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        if not line:
            continue
        if line[0] in b" \t":
            raise HttpError(status, "obsolete header line folding")
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            raise HttpError(status, f"malformed header line {line[:60]!r}")
        key = name.decode("latin-1").lower()
        val = value.strip(b" \t").decode("latin-1")
        headers[key] = f"{headers[key]}, {val}" if key in headers else val
    return headers


def _tokens(value: str) -> set[str]:
    return {t.strip().lower() for t in value.split(",") if t.strip()}


def _framing(headers: dict[str, str], status: int) -> int:
    te = headers.get("transfer-encoding")
    cl = headers.get("content-length")
    if te is not None:
        if cl is not None:
            raise HttpError(status, "both Transfer-Encoding and Content-Length")
        codings = [t.strip().lower() for t in te.split(",")]
        if codings[-1] != "chunked":
            raise HttpError(status, f"unsupported Transfer-Encoding {te!r}")
        return CHUNKED
    if cl is not None:
        values = {v.strip() for v in cl.split(",")}
        if len(values) != 1 or not _DIGITS.fullmatch(next(iter(values)).encode()):
            raise HttpError(status, f"bad Content-Length {cl!r}")
        return int(next(iter(values)))
    return NO_BODY


def parse_request_head(head: bytes) -> RequestHead:
    """``head`` ends with the blank line (CRLF CRLF)."""
    if len(head) > MAX_HEAD:
        raise HttpError(431, "request head larger than 64 KiB")
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise HttpError(400, f"malformed request line {lines[0][:80]!r}")
    method, target, version = parts
    if not _TOKEN.fullmatch(method) or not _TARGET.fullmatch(target):
        raise HttpError(400, f"malformed request line {lines[0][:80]!r}")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise HttpError(400, f"unsupported HTTP version {version[:20]!r}")
    headers = _fields(lines[1:], 400)
    if version == b"HTTP/1.1" and "host" not in headers:
        raise HttpError(400, "HTTP/1.1 request without a Host header")
    conn = _tokens(headers.get("connection", ""))
    body = _framing(headers, 400)
    return RequestHead(
        method=method.decode("latin-1"),
        target=target.decode("latin-1"),
        version=version,
        headers=headers,
        body=0 if body == NO_BODY else body,
        keep_alive=("close" not in conn) if version == b"HTTP/1.1" else ("keep-alive" in conn),
        upgrade=method == b"CONNECT" or ("upgrade" in conn and "upgrade" in headers),
        expect_continue=headers.get("expect", "").lower() == "100-continue",
    )


def parse_response_head(head: bytes, method: str) -> ResponseHead:
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if (
        len(parts) < 2
        or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0")
        or not _DIGITS.fullmatch(parts[1])
    ):
        raise HttpError(502, f"malformed status line from upstream {lines[0][:80]!r}")
    status = int(parts[1])
    if not 100 <= status <= 999:
        raise HttpError(502, f"bad status {status} from upstream")
    headers = _fields(lines[1:], 502)
    conn = _tokens(headers.get("connection", ""))
    keep = ("close" not in conn) if parts[0] == b"HTTP/1.1" else ("keep-alive" in conn)
    if (
        status < 200
        or status in (204, 304)
        or method == "HEAD"
        or (method == "CONNECT" and status < 300)
    ):
        body = NO_BODY
    else:
        body = _framing(headers, 502)
        if body == NO_BODY:
            body, keep = UNTIL_CLOSE, False
    return ResponseHead(status=status, headers=headers, body=body, keep_alive=keep)


class ChunkedScanner:
    """Finds where a chunked body (with its trailers) ends, without decoding it."""

    def __init__(self) -> None:
        self.state = "size"
        self.remaining = 0
        self.line = b""
        self.done = False
        self.data_bytes = 0

    def feed(self, data: bytes | bytearray) -> int:
        """How many bytes of ``data`` belong to the body (all of it until done)."""
        pos, n = 0, len(data)
        while pos < n and not self.done:
            if self.state == "data":
                take = min(self.remaining, n - pos)
                pos += take
                self.remaining -= take
                self.data_bytes += take
                if self.remaining == 0:
                    self.state = "crlf"
                continue
            idx = data.find(b"\n", pos)
            if idx < 0:
                self.line += bytes(data[pos:])
                if len(self.line) > MAX_CHUNK_LINE:
                    raise HttpError(400, "chunk header line too long")
                return n
            line = (self.line + bytes(data[pos:idx])).rstrip(b"\r")
            self.line = b""
            pos = idx + 1
            if len(line) > MAX_CHUNK_LINE:
                raise HttpError(400, "chunk header line too long")
            if self.state == "size":
                size = line.split(b";", 1)[0].strip(b" \t")
                if not _HEX.fullmatch(size):
                    raise HttpError(400, f"bad chunk size {size[:20]!r}")
                self.remaining = int(size, 16)
                self.state = "data" if self.remaining else "trailer"
            elif self.state == "crlf":
                if line:
                    raise HttpError(400, "chunk data longer than its size")
                self.state = "size"
            elif not line:  # trailer section ends with an empty line
                self.done = True
        return pos
