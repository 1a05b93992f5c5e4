"""Reading a container's log file: the whole of it, its tail, or following it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

from sandbox.kubelet_process import LogFile

__all__ = ["read_log", "tail"]

_CHUNK = 64 * 1024


def tail(data: bytes, lines: int) -> bytes:
    """The last ``lines`` lines of ``data`` (a final line without newline counts)."""
    if lines <= 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


def _read_from(path: Path, offset: int, inode: int | None) -> tuple[bytes, int, int]:
    """What was appended after ``offset``: ``(data, new offset, inode)``. After a
    rotation (another inode, or a shorter file) the new file is read from its start.

    Local log files are small appends: reading them is a quick, bounded syscall.
    """
    with path.open("rb") as handle:
        stat = os.fstat(handle.fileno())
        if stat.st_ino != inode or stat.st_size < offset:
            offset = 0
        handle.seek(offset)
        data = handle.read()
    return data, offset + len(data), stat.st_ino


async def read_log(
    path: Path, *, live: LogFile | None, follow: bool, tail_lines: int | None
) -> AsyncIterator[bytes]:
    """Yield the log; with ``follow``, keep yielding until the run ends."""
    try:
        data, offset, inode = _read_from(path, 0, None)
    except FileNotFoundError:
        return
    if tail_lines is not None:
        data = tail(data, tail_lines)
    if data:
        yield data
    if not follow or live is None or live.path != path:
        return
    while True:
        # No await between the size check and wait(): an append cannot slip in.
        more, offset, inode = _read_from(path, offset, inode)
        if more:
            yield more
            continue
        if live.closed:
            return
        await live.wait()
