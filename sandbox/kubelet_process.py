"""One run of one container: a local process group and its log file.

The process gets its own session (``setsid``), so the whole group can be
signalled at once; when its main process exits, whatever it left running in
the group is killed, as when a container's PID 1 exits. On Linux the main
process also gets ``PR_SET_PDEATHSIG``: should the sandbox itself be killed
with no chance to clean up, its containers die with it.

Output (stdout and stderr, interleaved as ``kubectl logs`` shows them) is
copied into a log file by one reader task; followers wait on ``LogFile`` for
more bytes instead of polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["ContainerProcess", "LogFile", "StartError"]

_PR_SET_PDEATHSIG = 1


class StartError(RuntimeError):
    """The program could not be started (not found, not executable, bad cwd)."""


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Resolved once here: between fork and exec the child must not load libraries.
_PRCTL = _load_prctl()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


class LogFile:
    """A container run's log: an append-only file plus a wake-up for followers.

    Past ``max_bytes`` the file is rotated (to ``NAME.1``, replacing the older
    one), as the kubelet's ``containerLogMaxSize`` does: a chatty container
    cannot fill the disk.
    """

    def __init__(self, path: Path, *, max_bytes: int = 10 * 1024 * 1024) -> None:
        self.path = path
        self.closed = False
        self.max_bytes = max_bytes
        self._size = 0
        self._grew = asyncio.Event()

    def append(self, data: bytes) -> None:
        if self._size and self._size + len(data) > self.max_bytes:
            self.path.replace(self.path.with_name(self.path.name + ".1"))
            self._size = 0
        with self.path.open("ab") as handle:
            handle.write(data)
        self._size += len(data)
        self._notify()

    def close(self) -> None:
        self.closed = True
        self._notify()

    def _notify(self) -> None:
        self._grew.set()
        self._grew = asyncio.Event()

    async def wait(self) -> None:
        """Return when the file grows or the run ends."""
        if not self.closed:
            await self._grew.wait()


def _exit_code(returncode: int) -> int:
    """``-SIGKILL`` -> 137, as a container runtime reports a signalled PID 1."""
    return 128 - returncode if returncode < 0 else returncode


class ContainerProcess:
    """Start, watch and stop one container process group."""

    def __init__(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log: LogFile,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.argv = argv
        self.env = dict(env)
        self.cwd = cwd
        self.log = log
        self.exit_code: int | None = None
        self._on_exit = on_exit
        self._process: asyncio.subprocess.Process | None = None
        self._done = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self) -> None:
        # Our own pipe, not asyncio's: Process.wait() would otherwise wait for every
        # holder of the pipe (a grandchild) instead of for the main process.
        read_fd, write_fd = os.pipe()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent if _PRCTL is not None else None,
            )
        except OSError as exc:
            os.close(read_fd)
            self.log.close()
            raise StartError(f'exec: "{self.argv[0]}": {exc.strerror or exc}') from exc
        finally:
            os.close(write_fd)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0)
        )
        pump = asyncio.create_task(self._pump(reader), name=f"log {self.argv[0]}")
        self._watcher = asyncio.create_task(self._watch(pump, transport))

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while chunk := await reader.read(65536):
                self.log.append(chunk)

    async def _watch(self, pump: asyncio.Task[None], transport: asyncio.BaseTransport) -> None:
        assert self._process is not None
        returncode = await self._process.wait()
        self._signal_group(signal.SIGKILL)  # PID 1 is gone: so is the container
        try:
            await asyncio.wait_for(asyncio.shield(pump), timeout=2)
        except TimeoutError:  # something outside the group still holds the pipe
            transport.close()
            pump.cancel()
        self.exit_code = _exit_code(returncode)
        self.log.close()
        self._done.set()
        if self._on_exit is not None:
            self._on_exit(self.exit_code)

    def _signal_group(self, signum: int) -> None:
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signum)

    async def wait(self) -> int:
        await self._done.wait()
        assert self.exit_code is not None
        return self.exit_code

    @property
    def running(self) -> bool:
        return self._process is not None and not self._done.is_set()

    async def stop(self, grace: float) -> int:
        """SIGTERM the group, SIGKILL it after ``grace`` seconds; the exit code."""
        if self._process is None:
            return self.exit_code if self.exit_code is not None else 0
        if not self._done.is_set():
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._done.wait(), timeout=max(grace, 0.0))
            except TimeoutError:
                self._signal_group(signal.SIGKILL)
        return await self.wait()

    def kill(self) -> None:
        """SIGKILL the group now (shutdown path; does not wait)."""
        self._signal_group(signal.SIGKILL)
