"""A tiny raw HTTP/1.1 client for the tests (keeps one connection, pipelines)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import anyio
import h11


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


class HttpConn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._rest = b""

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> HttpConn:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(
        self,
        path: str = "/",
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Reply:
        await self.send_request(path, method=method, headers=headers, body=body)
        return await self.read_reply()

    async def send_request(
        self,
        path: str = "/",
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> None:
        hdrs = [("host", "hello"), *list((headers or {}).items())]
        if body or method in ("POST", "PUT"):
            hdrs.append(("content-length", str(len(body))))
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs) + "\r\n"
        await self.send_raw(head.encode() + body)

    async def read_reply(self, timeout: float = 5.0) -> Reply:
        """The next response on the connection (interim 1xx answers are skipped)."""
        parser = h11.Connection(h11.CLIENT)
        parser.send(h11.Request(method="GET", target="/", headers=[("host", "h")]))
        parser.send(h11.EndOfMessage())
        if self._rest:
            parser.receive_data(self._rest)
        status = 0
        headers: dict[str, str] = {}
        body = b""
        with anyio.fail_after(timeout):
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    parser.receive_data(await self.reader.read(65536))
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    headers = {k.decode(): v.decode() for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise ConnectionError("closed before a reply")
        self._rest = bytes(parser.trailing_data[0])
        return Reply(status, headers, body)

    async def read_all(self, timeout: float = 5.0) -> bytes:
        out = b""
        with anyio.fail_after(timeout):
            while data := await self.reader.read(65536):
                out += data
        return out

    def close(self) -> None:
        self.writer.close()


def parse_raw_reply(data: bytes) -> tuple[int, bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
