"""The intercept wizard as a sequence of validated steps, with no UI in it.

Which steps are asked depends on the workload and on earlier answers:

    service (if several) -> port (if several) -> local port -> global/personal
      personal: -> headers -> path -> preview URL yes/no
        preview: -> ingress host -> TLS -> ingress port -> L5 hostname

Defaults follow the manager's mode (DESIGN.md, "Modes and login"): team mode
proposes personal intercepts with ``auto`` headers, ``/`` and a preview URL;
single-user mode proposes a global intercept. ``Wizard.spec()`` turns the
answers into the ``InterceptSpec`` core sends to the manager.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from core.naming import derive_name
from core.preview import PreviewDefaults, PreviewTarget
from core.protocol import AUTO_HEADER, InterceptSpec
from tui.wizard import fields

if TYPE_CHECKING:
    from core.models import ServicePortInfo, ServiceRef, WorkloadInfo

StepId = Literal[
    "service",
    "port",
    "local_port",
    "scope",
    "headers",
    "path",
    "preview",
    "ingress_host",
    "ingress_tls",
    "ingress_port",
    "hostname",
]
Mode = Literal["single-user", "team"]


class WizardError(Exception):
    """The workload cannot be intercepted as it is; ``hint`` says what to do."""

    def __init__(self, title: str, hint: str) -> None:
        super().__init__(f"{title}: {hint}")
        self.title = title
        self.hint = hint


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


@dataclass(frozen=True)
class Step:
    id: StepId
    question: str
    kind: Literal["choice", "text"]
    default: str
    hint: str = ""
    choices: tuple[Choice, ...] = ()
    check: Callable[[str], str | None] | None = None

    def validate(self, value: str) -> str | None:
        if self.kind == "choice":
            known = {c.value for c in self.choices}
            return None if value in known else f"pick one of: {', '.join(sorted(known))}"
        return self.check(value) if self.check else None


@dataclass
class Wizard:
    workload: WorkloadInfo
    mode: Mode
    session_id: str
    preview_defaults: dict[str, PreviewDefaults] = field(default_factory=dict)
    """Detected ingress defaults, by Service name (filled in as they arrive)."""
    busy_local_ports: frozenset[int] = frozenset()
    local_port: int | None = None
    """Where the developer's process is known to listen (``--local-port``, set by
    `waylay demo` to its workstation server); else the Service's target port."""
    answers: dict[StepId, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.workload.services:
            raise WizardError(
                f"No Service selects {self.workload.name}",
                "an intercept takes over a Service port: create a Service whose "
                "selector matches the workload's pods, then try again",
            )

    # ------------------------------------------------------------ the steps

    @property
    def name(self) -> str:
        """The intercept's name, as ``waylay intercept WORKLOAD -n NS`` names it."""
        return derive_name(self.workload.name, self.workload.namespace)

    def steps(self) -> list[Step]:
        """The steps to ask, given the answers so far."""
        steps: list[Step] = []
        services = self.workload.services
        if len(services) > 1:
            steps.append(
                Step(
                    "service",
                    f"{self.workload.name} is behind several Services. Which one?",
                    "choice",
                    services[0].name,
                    choices=tuple(Choice(s.name, _service_label(s)) for s in services),
                )
            )
        service = self.service
        if len(service.ports) > 1:
            steps.append(
                Step(
                    "port",
                    f"Which port of Service {service.name}?",
                    "choice",
                    _port_key(service.ports[0]),
                    choices=tuple(Choice(_port_key(p), _port_label(p)) for p in service.ports),
                )
            )
        port = self.service_port
        busy = self.busy_local_ports
        steps.append(
            Step(
                "local_port",
                "Which local port should receive the traffic?",
                "text",
                str(self.local_port or _default_local_port(port)),
                hint="your process listens here, on 127.0.0.1"
                + (" (default from --local-port)" if self.local_port else ""),
                check=lambda text: fields.check_local_port(text, busy=busy),
            )
        )
        if port.protocol.upper() == "UDP":
            return steps
        scope_default = "personal" if self.mode == "team" else "global"
        steps.append(
            Step(
                "scope",
                "Intercept all traffic, or only your requests?",
                "choice",
                scope_default,
                choices=(
                    Choice("global", "global: every connection to the port comes to you"),
                    Choice("personal", "personal: only requests that carry your header/path"),
                ),
            )
        )
        if self.answers.get("scope", scope_default) != "personal":
            return steps
        steps.append(
            Step(
                "headers",
                "Which requests are yours? (headers to match)",
                "text",
                fields.AUTO,
                hint=f"'auto' matches {AUTO_HEADER}; or Name=value, Name2=value2",
                check=fields.check_headers,
            )
        )
        steps.append(
            Step(
                "path",
                "Only requests under this path prefix:",
                "text",
                "/",
                hint="'/' matches every path",
                check=fields.check_path,
            )
        )
        preview_default = "yes" if self.mode == "team" else "no"
        steps.append(
            Step(
                "preview",
                "Create a shareable preview URL?",
                "choice",
                preview_default,
                choices=(Choice("yes", "yes"), Choice("no", "no")),
            )
        )
        if self.answers.get("preview", preview_default) != "yes":
            return steps
        steps.extend(self._preview_steps())
        return steps

    def _preview_steps(self) -> list[Step]:
        detected = self.preview_defaults.get(self.service.name)
        tls_default = detected.tls if detected else False
        tls = self.answers.get("ingress_tls", "yes" if tls_default else "no") == "yes"
        # The detected port only holds for the detected TLS answer.
        same_tls = detected is not None and detected.tls == tls
        port_default = detected.port if detected and same_tls else 443 if tls else 80
        host = self.answers.get("ingress_host", detected.host if detected else "")
        found = f"detected: {detected.source}" if detected else "no ingress found: type one"
        return [
            Step(
                "ingress_host",
                "Ingress: which host serves the cluster's ingress?",
                "text",
                detected.host if detected else "",
                hint=f"{found}; a Service as name.namespace, or a DNS name",
                check=fields.check_host,
            ),
            Step(
                "ingress_tls",
                "Does the ingress speak TLS?",
                "choice",
                "yes" if tls_default else "no",
                choices=(Choice("yes", "yes (https)"), Choice("no", "no (http)")),
            ),
            Step(
                "ingress_port",
                "Ingress port:",
                "text",
                str(port_default),
                hint="443 for TLS, 80 without, unless your ingress differs",
                check=fields.check_port,
            ),
            Step(
                "hostname",
                "L5 hostname (Host header and TLS SNI):",
                "text",
                detected.hostname if detected and detected.hostname else host,
                hint="the host name your Ingress rules route to this Service",
                check=fields.check_host,
            ),
        ]

    def set(self, step: StepId, value: str) -> str | None:
        """Record an answer; returns the validation problem instead when there is one."""
        match = [s for s in self.steps() if s.id == step]
        if not match:
            return f"{step} is not asked for this workload"
        problem = match[0].validate(value)
        if problem is None:
            self.answers[step] = value.strip()
            # Later answers may no longer apply (another service, another scope).
            ids = [s.id for s in self.steps()]
            for later in list(self.answers):
                if later not in ids:
                    del self.answers[later]
        return problem

    def complete(self) -> bool:
        return all(s.id in self.answers for s in self.steps())

    def next_step(self) -> Step | None:
        """The first step without an answer."""
        return next((s for s in self.steps() if s.id not in self.answers), None)

    # --------------------------------------------------------- derived values

    @property
    def service(self) -> ServiceRef:
        chosen = self.answers.get("service")
        for service in self.workload.services:
            if service.name == chosen:
                return service
        return self.workload.services[0]

    @property
    def service_port(self) -> ServicePortInfo:
        chosen = self.answers.get("port")
        ports = self.service.ports
        for port in ports:
            if _port_key(port) == chosen:
                return port
        if not ports:
            raise WizardError(
                f"Service {self.service.name} has no ports",
                "add a port to the Service, then try again",
            )
        return ports[0]

    @property
    def personal(self) -> bool:
        return self.answers.get("scope") == "personal"

    def preview(self) -> PreviewTarget | None:
        """The answers to the four preview prompts, when a preview URL was asked for."""
        if not self.personal or self.answers.get("preview") != "yes":
            return None
        return PreviewTarget(
            host=self.answers["ingress_host"],
            port=int(self.answers["ingress_port"]),
            tls=self.answers["ingress_tls"] == "yes",
            hostname=self.answers["hostname"],
        )

    def spec(self) -> InterceptSpec:
        """The intercept spec for the answers; call when ``complete()``."""
        port = self.service_port
        extra: dict[str, Any] = {}
        if self.personal:
            extra["headers"] = fields.parse_headers(
                self.answers["headers"], session_id=self.session_id, intercept=self.name
            )
            extra["path"] = fields.parse_path(self.answers["path"])
        return InterceptSpec(
            name=self.name,
            namespace=self.workload.namespace,
            workload=self.workload.name,
            workload_kind=self.workload.kind,
            service=self.service.name,
            service_port=port.port,
            service_port_name=port.name or "",
            protocol="UDP" if port.protocol.upper() == "UDP" else "TCP",
            mechanism="http" if self.personal else "tcp",
            local_port=int(self.answers["local_port"]),
            **extra,
        )


def curl_line(spec: InterceptSpec, preview_url: str | None = None) -> str:
    """A ready command that sends one request the intercept will route to you."""
    path = spec.path.value if spec.path else "/"
    if preview_url:
        return f"curl {preview_url.rstrip('/')}{path}"
    target = f"http://{spec.service}.{spec.namespace}:{spec.service_port}{path}"
    headers = "".join(f" -H '{k}: {v}'" for k, v in spec.headers.items())
    return f"curl{headers} {target}"


def header_line(spec: InterceptSpec) -> str:
    """The header(s) to set, or a note that every request comes through."""
    if not spec.headers:
        return "none: every connection to the port is intercepted"
    return ", ".join(f"{k}: {v}" for k, v in spec.headers.items())


def _port_key(port: ServicePortInfo) -> str:
    return port.name or str(port.port)


def _port_label(port: ServicePortInfo) -> str:
    name = f"{port.name} " if port.name else ""
    return f"{name}{port.port} -> {port.target_port}/{port.protocol}"


def _service_label(service: ServiceRef) -> str:
    ports = ", ".join(_port_label(p) for p in service.ports)
    return f"{service.name} ({ports})"


def _default_local_port(port: ServicePortInfo) -> int:
    target = port.target_port
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    return port.port
