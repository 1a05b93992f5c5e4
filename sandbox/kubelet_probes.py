"""Container probes (httpGet, tcpSocket, exec) and the loop that runs one.

A ``Prober`` runs one probe of one container at its ``periodSeconds`` (no
faster), counts consecutive results against ``successThreshold`` and
``failureThreshold``, and calls back only when the verdict changes. Failure
messages use the real kubelet's wording, since ``kubectl describe`` shows
them in ``Unhealthy`` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ProbeResult", "Prober", "resolve_port", "run_probe"]


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str = ""


def resolve_port(port: Any, container: dict[str, Any]) -> int:
    """A probe's ``port``: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    for declared in container.get("ports") or []:
        if declared.get("name") == text:
            return int(declared["containerPort"])
    raise ValueError(f"port {text!r} is not a named port of container {container.get('name')!r}")


async def _http_get(spec: dict[str, Any], host: str, port: int, timeout: float) -> ProbeResult:
    scheme = str(spec.get("scheme", "HTTP")).upper()
    path = str(spec.get("path") or "/")
    if not path.startswith("/"):
        path = "/" + path
    target = host or "127.0.0.1"
    url = f"{scheme.lower()}://{target}:{port}{path}"
    headers = {"Host": f"{target}:{port}", "User-Agent": "kube-probe/1.32", "Accept": "*/*"}
    for header in spec.get("httpHeaders") or []:
        headers[str(header["name"])] = str(header.get("value", ""))
    context: ssl.SSLContext | None = None
    if scheme == "HTTPS":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the kubelet does not verify probe certificates
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(target, port, ssl=context)
            try:
                head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                writer.write(f"GET {path} HTTP/1.1\r\n{head}Connection: close\r\n\r\n".encode())
                await writer.drain()
                status_line = await reader.readline()
            finally:
                writer.close()
    except TimeoutError:
        return ProbeResult(
            False,
            f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting '
            "headers)",
        )
    except OSError as exc:
        return ProbeResult(False, f'Get "{url}": dial tcp {target}:{port}: {_why(exc)}')
    parts = status_line.decode("latin-1").split()
    if len(parts) < 2 or not parts[1].isdigit():
        return ProbeResult(False, f'Get "{url}": malformed HTTP response {status_line!r}')
    code = int(parts[1])
    if 200 <= code < 400:
        return ProbeResult(True)
    return ProbeResult(False, f"HTTP probe failed with statuscode: {code}")


def _why(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connect: connection refused"
    return f"connect: {exc.strerror or exc}".lower()


async def _tcp(host: str, port: int, timeout: float) -> ProbeResult:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
        writer.close()
        return ProbeResult(True)
    except TimeoutError:
        return ProbeResult(False, f"dial tcp {host}:{port}: i/o timeout")
    except OSError as exc:
        return ProbeResult(False, f"dial tcp {host}:{port}: {_why(exc)}")


async def _exec(
    command: list[str], env: Mapping[str, str], cwd: Path, timeout: float
) -> ProbeResult:
    if not command:
        return ProbeResult(False, "exec probe has no command")
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        return ProbeResult(False, f'exec: "{command[0]}": {exc.strerror or exc}')
    try:
        async with asyncio.timeout(timeout):
            output, _ = await process.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        return ProbeResult(False, f"command {command!r} timed out")
    if process.returncode == 0:
        return ProbeResult(True)
    return ProbeResult(False, output.decode("utf-8", "replace").strip()[:1024])


async def run_probe(
    probe: dict[str, Any],
    *,
    container: dict[str, Any],
    pod_ip: str,
    env: Mapping[str, str],
    cwd: Path,
) -> ProbeResult:
    """Run ``probe`` once."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "httpGet" in probe:
            spec = probe["httpGet"]
            port = resolve_port(spec.get("port"), container)
            return await _http_get(spec, str(spec.get("host") or pod_ip), port, timeout)
        if "tcpSocket" in probe:
            spec = probe["tcpSocket"]
            port = resolve_port(spec.get("port"), container)
            return await _tcp(str(spec.get("host") or pod_ip), port, timeout)
        if "exec" in probe:
            command = [str(part) for part in probe["exec"].get("command") or []]
            return await _exec(command, env, cwd, timeout)
    except ValueError as exc:
        return ProbeResult(False, str(exc))
    return ProbeResult(False, "the sandbox supports httpGet, tcpSocket and exec probes only")


class Prober:
    """Runs one probe on its period; ``on_change(ok, message)`` when the verdict flips.

    The verdict starts as ``initial``: ``False`` for readiness and startup
    (not ready until proven), ``True`` for liveness (alive until proven dead).
    """

    def __init__(
        self,
        probe: dict[str, Any],
        *,
        check: Callable[[], Awaitable[ProbeResult]],
        on_change: Callable[[bool, str], None],
        on_failure: Callable[[str], None] | None = None,
        initial: bool,
    ) -> None:
        self.probe = probe
        self.ok = initial
        self._check = check
        self._on_change = on_change
        self._on_failure = on_failure
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="prober")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        period = max(float(self.probe.get("periodSeconds") or 10), 0.1)
        success_needed = int(self.probe.get("successThreshold") or 1)
        failure_needed = int(self.probe.get("failureThreshold") or 3)
        successes = failures = 0
        await asyncio.sleep(float(self.probe.get("initialDelaySeconds") or 0))
        while True:
            result = await self._check()
            if result.ok:
                successes, failures = successes + 1, 0
                if not self.ok and successes >= success_needed:
                    self.ok = True
                    self._on_change(True, "")
            else:
                successes, failures = 0, failures + 1
                if self._on_failure is not None:
                    self._on_failure(result.message)
                if self.ok and failures >= failure_needed:
                    self.ok = False
                    self._on_change(False, result.message)
                elif not self.ok and failures >= failure_needed and failures % failure_needed == 0:
                    self._on_change(False, result.message)
            await asyncio.sleep(period)
