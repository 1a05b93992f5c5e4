"""One container of one pod, through its whole life on the node.

``ContainerRuntime.run()`` is the loop a real kubelet's sync runs for a
container: pull (look the image up), configure (env), create and start the
process, probe it, and when it exits decide by ``restartPolicy`` whether to
start it again after the CrashLoopBackOff delay (10 s doubling to 5 min, reset
after 10 min of running; all three come from ``Timings``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sandbox.images import image_name, python_argv, resolve
from sandbox.kubelet_env import EnvError, expand
from sandbox.kubelet_events import now_rfc3339
from sandbox.kubelet_probes import Prober, ProbeResult, run_probe
from sandbox.kubelet_process import ContainerProcess, LogFile, StartError
from sandbox.kubelet_status import ContainerStatus

__all__ = ["ContainerRuntime", "PodContext", "Timings", "format_duration"]

_KEEP_RUNS = 2  # the current run's log and the previous one (kubectl logs --previous)


@dataclass(frozen=True)
class Timings:
    backoff_initial: float = 10.0
    backoff_max: float = 300.0
    backoff_reset: float = 600.0
    """A container that ran this long starts over at ``backoff_initial``."""


class PodContext(Protocol):
    """What a container needs from the pod it belongs to."""

    pod: dict[str, Any]
    pod_ip: str
    workdir: Path
    timings: Timings

    def env_for(self, container: dict[str, Any]) -> dict[str, str]: ...

    def emit(self, type_: str, reason: str, message: str, *, field_path: str = "") -> None: ...

    def changed(self) -> None: ...


def format_duration(seconds: float) -> str:
    """Go's ``time.Duration`` string for whole seconds: ``10s``, ``2m40s``, ``5m0s``."""
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:g}s" if seconds != whole else f"{whole}s"
    return f"{whole // 60}m{whole % 60}s"


class ContainerRuntime:
    """Runs ``spec`` (a pod's container) until ``stop()`` or a final exit."""

    def __init__(self, spec: dict[str, Any], pod: PodContext, *, init: bool = False) -> None:
        self.spec = spec
        self.name = str(spec["name"])
        self.pod = pod
        self.init = init
        self.status = ContainerStatus(name=self.name, image=str(spec.get("image", "")))
        self.log_dir = pod.workdir / "logs" / self.name
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.current_log: LogFile | None = None
        self.process: ContainerProcess | None = None
        self._stopping = asyncio.Event()
        self._backoff = 0.0
        self._pulled = False
        self.runs = 0
        """How many times the process was started; run ``n`` logs to ``logs/NAME/n.log``."""
        self._probers: list[Prober] = []
        self._restart_reason: str | None = None
        self._kill_task: asyncio.Task[int] | None = None
        self._env: dict[str, str] = {}

    # ----------------------------------------------------------------- helpers

    @property
    def field_path(self) -> str:
        kind = "initContainers" if self.init else "containers"
        return f"spec.{kind}{{{self.name}}}"

    def _emit(self, type_: str, reason: str, message: str) -> None:
        self.pod.emit(type_, reason, message, field_path=self.field_path)

    def _set_state(self, state: dict[str, Any], **changes: Any) -> None:
        self.status.state = state
        for key, value in changes.items():
            setattr(self.status, key, value)
        self.pod.changed()

    async def _pause(self, seconds: float) -> bool:
        """Sleep unless stopped first; ``True`` when still meant to run."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        return not self._stopping.is_set()

    def _next_delay(self) -> float:
        """CrashLoopBackOff: 0 the first time, then initial, doubling, capped."""
        delay = self._backoff
        timings = self.pod.timings
        self._backoff = (
            timings.backoff_initial if delay == 0 else min(delay * 2, timings.backoff_max)
        )
        return delay

    @property
    def _pod_ref(self) -> str:
        meta = self.pod.pod["metadata"]
        return f"{meta['name']}_{meta.get('namespace', 'default')}({meta.get('uid', '')})"

    def log_path(self, run: int) -> Path:
        return self.log_dir / f"{run}.log"

    # --------------------------------------------------------------- the loop

    async def run(self) -> None:
        """Keep the container going; returns when stopped or finished for good."""
        while not self._stopping.is_set():
            argv = await self._prepare()
            if argv is None:
                continue
            exit_code, started, finished = await self._run_once(argv)
            if self._stopping.is_set():
                return
            policy = str(self.pod.pod["spec"].get("restartPolicy", "Always"))
            restart = policy == "Always" or (policy == "OnFailure" and exit_code != 0)
            if self.init and exit_code == 0:
                restart = False
            if not restart:
                self.status.done = True
                self.pod.changed()
                return
            if finished - started >= self.pod.timings.backoff_reset:
                self._backoff = 0.0
            delay = self._next_delay()
            if delay > 0:
                self._set_state(
                    {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off {format_duration(delay)} restarting failed "
                            f"container={self.name} pod={self._pod_ref}",
                        }
                    }
                )
                self._emit(
                    "Warning",
                    "BackOff",
                    f"Back-off restarting failed container {self.name} in pod {self._pod_ref}",
                )
            if not await self._pause(delay):
                return
            self.status.restart_count += 1

    async def _prepare(self) -> list[str] | None:
        """Pull and configure; ``None`` after a failure (already backed off)."""
        image_ref = str(self.spec.get("image", ""))
        image = resolve(image_ref)
        if image is None:
            reason = (
                f'failed to pull and unpack image "{image_ref}": image "{image_name(image_ref)}" '
                "is not in the sandbox's image registry (sandbox/images)"
            )
            self._set_state({"waiting": {"reason": "ErrImagePull", "message": reason}})
            self._emit("Normal", "Pulling", f'Pulling image "{image_ref}"')
            self._emit("Warning", "Failed", f'Failed to pull image "{image_ref}": {reason}')
            self._emit("Warning", "Failed", "Error: ErrImagePull")
            delay = max(self._next_delay(), self.pod.timings.backoff_initial / 10)
            await self._pause(min(delay, 1.0))
            self._set_state(
                {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": f'Back-off pulling image "{image_ref}": ErrImagePull: {reason}',
                    }
                }
            )
            self._emit("Normal", "BackOff", f'Back-off pulling image "{image_ref}"')
            self._emit("Warning", "Failed", "Error: ImagePullBackOff")
            await self._pause(delay)
            return None
        if not self._pulled:
            self._pulled = True
            self._backoff = 0.0
            self._emit(
                "Normal", "Pulled", f'Container image "{image_ref}" already present on machine'
            )
        self.status.image_id = f"{image_name(image_ref)}@{image.digest(image_name(image_ref))}"
        try:
            env = self.pod.env_for(self.spec)
        except EnvError as exc:
            self._set_state(
                {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
            )
            self._emit("Warning", "Failed", f"Error: {exc}")
            await self._pause(max(self._next_delay(), 1.0))
            return None
        self._env = env
        command = [expand(str(part), env) for part in self.spec.get("command") or []]
        args = [expand(str(part), env) for part in self.spec.get("args") or []]
        entrypoint = command or list(image.entrypoint)
        return python_argv(entrypoint + args)

    async def _run_once(self, argv: list[str]) -> tuple[int, float, float]:
        loop = asyncio.get_running_loop()
        run = self.runs
        self.runs += 1
        path = self.log_path(run)
        path.write_bytes(b"")
        stale = self.log_path(run - _KEEP_RUNS)
        stale.unlink(missing_ok=True)
        self.current_log = LogFile(path)
        container_id = "sandbox://" + uuid.uuid4().hex
        self.process = ContainerProcess(
            argv, env=self._env, cwd=self.pod.workdir, log=self.current_log
        )
        started = loop.time()
        try:
            await self.process.start()
        except StartError as exc:
            now = now_rfc3339()
            message = f"failed to create containerd task: failed to start: {exc}"
            self._finish(
                {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": message,
                    "startedAt": "1970-01-01T00:00:00Z",
                    "finishedAt": now,
                    "containerID": container_id,
                },
                container_id,
            )
            self._emit("Warning", "Failed", f"Error: {message}")
            return 128, started, loop.time()
        started_at = now_rfc3339()
        self._emit("Normal", "Created", f"Created container {self.name}")
        self._emit("Normal", "Started", f"Started container {self.name}")
        has_startup = bool(self.spec.get("startupProbe")) and not self.init
        has_readiness = bool(self.spec.get("readinessProbe")) and not self.init
        self.status.container_id = container_id
        self._set_state(
            {"running": {"startedAt": started_at}},
            started=not has_startup,
            ready=not has_readiness and not self.init,
        )
        if has_startup:
            self._start_startup_probe()
        else:
            self._start_probes()
        self._restart_reason = None
        exit_code = await self.process.wait()
        self._stop_probers()
        finished = loop.time()
        reason = "Completed" if exit_code == 0 else "Error"
        self._finish(
            {
                "exitCode": exit_code,
                "reason": reason,
                "startedAt": started_at,
                "finishedAt": now_rfc3339(),
                "containerID": container_id,
            },
            container_id,
        )
        return exit_code, started, finished

    def _finish(self, terminated: dict[str, Any], container_id: str) -> None:
        self.status.container_id = container_id
        self.status.last_state = {"terminated": terminated}
        self._set_state({"terminated": terminated}, ready=False, started=False)

    # ----------------------------------------------------------------- probes

    async def _check(self, probe: dict[str, Any]) -> ProbeResult:
        return await run_probe(
            probe,
            container=self.spec,
            pod_ip=self.pod.pod_ip,
            env=self._env,
            cwd=self.pod.workdir,
        )

    def _prober(
        self,
        kind: str,
        *,
        initial: bool,
        on_change: Callable[[bool, str], None],
    ) -> Prober:
        probe = self.spec[kind]
        label = {"readinessProbe": "Readiness", "livenessProbe": "Liveness"}.get(kind, "Startup")

        def failed(message: str) -> None:
            self._emit("Warning", "Unhealthy", f"{label} probe failed: {message}")

        prober = Prober(
            probe,
            check=lambda: self._check(probe),
            on_change=on_change,
            on_failure=failed,
            initial=initial,
        )
        self._probers.append(prober)
        prober.start()
        return prober

    def _start_startup_probe(self) -> None:
        def changed(ok: bool, message: str) -> None:
            if ok:
                self.status.started = True
                self.pod.changed()
                self._probers = [p for p in self._probers if p.probe is not startup.probe]
                startup.stop()
                self._start_probes()
            else:
                self._kill_for("startup")

        startup = self._prober("startupProbe", initial=False, on_change=changed)

    def _start_probes(self) -> None:
        if self.init:
            return
        if self.spec.get("readinessProbe"):

            def readiness(ok: bool, message: str) -> None:
                if self.status.ready != ok and self.status.running:
                    self.status.ready = ok
                    self.pod.changed()

            self._prober("readinessProbe", initial=False, on_change=readiness)
        if self.spec.get("livenessProbe"):

            def liveness(ok: bool, message: str) -> None:
                if not ok:
                    self._kill_for("liveness")

            self._prober("livenessProbe", initial=True, on_change=liveness)

    def _kill_for(self, probe: str) -> None:
        if self._restart_reason is not None or self.process is None:
            return
        self._restart_reason = probe
        self._stop_probers()
        self._emit(
            "Normal",
            "Killing",
            f"Container {self.name} failed {probe} probe, will be restarted",
        )
        grace = float(self.pod.pod["spec"].get("terminationGracePeriodSeconds", 30))
        self._kill_task = asyncio.create_task(self.process.stop(grace), name=f"kill {self.name}")

    def _stop_probers(self) -> None:
        for prober in self._probers:
            prober.stop()
        self._probers.clear()

    # ------------------------------------------------------------------- stop

    async def stop(self, grace: float) -> None:
        """Graceful stop: SIGTERM, then SIGKILL after ``grace`` seconds."""
        self._stopping.set()
        self._stop_probers()
        if self.process is not None and self.process.running:
            self._emit("Normal", "Killing", f"Stopping container {self.name}")
            await self.process.stop(grace)

    def kill(self) -> None:
        """Shutdown: SIGKILL at once, no Event."""
        self._stopping.set()
        self._stop_probers()
        if self.process is not None:
            self.process.kill()
