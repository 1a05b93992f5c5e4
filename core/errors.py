"""One error hierarchy for everything a waylay user can run into.

Every error carries a short ``title`` (what went wrong, one line) and a ``hint``
(what to do about it). Low-level exceptions (urllib3, the ``kubernetes``
client, sockets, keyring) are translated at the edge, in ``core.kube`` and the
modules that talk to the outside, so callers only ever see these::

    WaylayError
    ├── ClusterError                 talking to the Kubernetes API
    │   ├── NoKubeconfig
    │   ├── UnknownContext
    │   ├── ContextUnreachable
    │   ├── RbacDenied
    │   └── KubeApiError             any other API status (has .status, .reason)
    ├── ResolveError                 resolving what the user asked for
    │   ├── UnknownWorkload          with "did you mean"
    │   ├── NoMatchingService
    │   ├── SeveralServices          lists them
    │   └── AmbiguousPort            lists them
    ├── ManagerError                 the traffic manager and its agents
    │   ├── ManagerMissing
    │   ├── VersionSkew
    │   ├── AgentNotArriving         with the reason
    │   └── ManagerRefused           a Problem the manager answered with
    ├── LocalError                   the workstation
    │   ├── PortHeld                 says who holds it
    │   ├── NothingListening         a warning, not a failure
    │   ├── KeyringUnavailable       names the fix and WAYLAY_API_KEY
    │   ├── NotLoggedIn
    │   └── DaemonUnavailable
    ├── InvalidSpec                  points at the line
    └── RemoteError                  any of the above, as reported by the daemon

``severity`` is ``"warning"`` only for errors that must be shown but must not
stop anything (``NothingListening``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import ClassVar, Literal

__all__ = [
    "AgentNotArriving",
    "AmbiguousPort",
    "ClusterError",
    "ContextUnreachable",
    "DaemonUnavailable",
    "InvalidSpec",
    "KeyringUnavailable",
    "KubeApiError",
    "LocalError",
    "ManagerError",
    "ManagerMissing",
    "ManagerRefused",
    "NoKubeconfig",
    "NoMatchingService",
    "NotLoggedIn",
    "NothingListening",
    "PortHeld",
    "RbacDenied",
    "RemoteError",
    "ResolveError",
    "SeveralServices",
    "UnknownContext",
    "UnknownWorkload",
    "VersionSkew",
    "WaylayError",
]


class WaylayError(Exception):
    """Base of every error waylay reports to a person."""

    severity: ClassVar[Literal["error", "warning"]] = "error"
    code: ClassVar[str] = "error"
    """Stable machine code (used in ``-o json`` output and by the daemon)."""

    def __init__(self, title: str, hint: str = "", *, detail: str = "") -> None:
        super().__init__(title)
        self.title = title
        self.hint = hint
        self.detail = detail

    def __str__(self) -> str:
        parts = [self.title]
        if self.detail:
            parts.append(self.detail)
        if self.hint:
            parts.append(self.hint)
        return "\n".join(parts)

    def to_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "severity": self.severity,
            "title": self.title,
            "detail": self.detail,
            "hint": self.hint,
        }


def _listing(items: Iterable[str]) -> str:
    return ", ".join(items) or "(none)"


# ------------------------------------------------------------------- cluster


class ClusterError(WaylayError):
    """Talking to the Kubernetes API went wrong."""

    code = "cluster"


class NoKubeconfig(ClusterError):
    code = "no-kubeconfig"

    def __init__(self, searched: Sequence[str] = ()) -> None:
        where = f" (looked in {_listing(searched)})" if searched else ""
        super().__init__(
            f"No kubeconfig found{where}",
            "Point KUBECONFIG at a kubeconfig file, pass --kubeconfig, or run "
            "`waylay demo` to start the built-in sandbox cluster.",
        )
        self.searched = list(searched)


class UnknownContext(ClusterError):
    code = "unknown-context"

    def __init__(self, context: str, known: Sequence[str]) -> None:
        close = difflib.get_close_matches(context, known, n=1)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        super().__init__(
            f"Context {context!r} is not in the kubeconfig",
            hint + f"Known contexts: {_listing(known)}.",
        )
        self.context = context


class ContextUnreachable(ClusterError):
    code = "unreachable"

    def __init__(self, context: str, server: str, reason: str = "") -> None:
        super().__init__(
            f"Cannot reach the cluster of context {context!r} at {server}",
            "Check that the cluster is running and that you are on its network "
            "(VPN?); `waylay sandbox status` tells whether the sandbox is up.",
            detail=reason,
        )
        self.context = context
        self.server = server


class RbacDenied(ClusterError):
    code = "forbidden"

    def __init__(
        self, verb: str, resource: str, namespace: str | None = None, *, message: str = ""
    ) -> None:
        where = f" in namespace {namespace!r}" if namespace else " cluster-wide"
        super().__init__(
            f"Not allowed to {verb} {resource}{where}",
            f"Ask a cluster admin for a Role granting '{verb}' on '{resource}', "
            "or switch to a context that has it (`waylay list --context ...`).",
            detail=message,
        )
        self.verb = verb
        self.resource = resource
        self.namespace = namespace


class KubeApiError(ClusterError):
    code = "api"

    def __init__(self, status: int, reason: str, message: str, *, what: str = "") -> None:
        super().__init__(
            f"The Kubernetes API answered {status} {reason}" + (f" for {what}" if what else ""),
            "Read the message above; retry, or report it if it persists.",
            detail=message,
        )
        self.status = status
        self.reason = reason
        self.message = message


# -------------------------------------------------------------------- lookup


class ResolveError(WaylayError):
    """What the user named does not resolve to exactly one thing."""

    code = "lookup"


class UnknownWorkload(ResolveError):
    code = "unknown-workload"

    def __init__(self, name: str, namespace: str, known: Sequence[str]) -> None:
        close = difflib.get_close_matches(name, known, n=3)
        if close:
            hint = f"Did you mean {' or '.join(repr(c) for c in close)}?"
        elif known:
            hint = f"Workloads in {namespace!r}: {_listing(sorted(known))}."
        else:
            hint = f"Namespace {namespace!r} has no workloads; pick another with -n."
        super().__init__(f"No workload named {name!r} in namespace {namespace!r}", hint)
        self.name = name
        self.namespace = namespace
        self.suggestions = close


class NoMatchingService(ResolveError):
    code = "no-service"

    def __init__(
        self, workload: str, namespace: str, *, service: str = "", available: Sequence[str] = ()
    ) -> None:
        if service:
            super().__init__(
                f"Service {service!r} does not select the pods of {workload!r}",
                f"Services that do: {_listing(available)}; pass one of them to --service.",
            )
        else:
            super().__init__(
                f"No Service in {namespace!r} selects the pods of {workload!r}",
                "Create a Service whose selector matches the workload's pod labels; "
                "waylay intercepts traffic that arrives through a Service.",
            )


class SeveralServices(ResolveError):
    code = "several-services"

    def __init__(self, workload: str, services: Sequence[str]) -> None:
        super().__init__(
            f"Several Services select {workload!r}: {_listing(services)}",
            f"Name one with --service (for example --service {services[0]}).",
        )
        self.services = list(services)


class AmbiguousPort(ResolveError):
    code = "ambiguous-port"

    def __init__(self, service: str, ports: Sequence[str], asked: str = "") -> None:
        title = (
            f"Service {service!r} has no port {asked!r}"
            if asked
            else f"Service {service!r} has several ports"
        )
        super().__init__(
            title + f": {_listing(ports)}",
            f"Choose one with --port LOCAL:SVCPORT (for example --port 8080:{ports[0]})."
            if ports
            else "The Service declares no ports.",
        )
        self.service = service
        self.ports = list(ports)


# ------------------------------------------------------------------- manager


class ManagerError(WaylayError):
    code = "manager"


class ManagerMissing(ManagerError):
    code = "manager-missing"

    def __init__(self, namespace: str, reason: str = "") -> None:
        super().__init__(
            f"The traffic manager is not running in namespace {namespace!r}",
            "Install it with `waylay install` (needs cluster-admin once).",
            detail=reason,
        )


class VersionSkew(ManagerError):
    code = "version-skew"

    def __init__(self, ours: str, theirs: str, peer: str = "traffic manager") -> None:
        super().__init__(
            f"The {peer} speaks protocol {theirs}, this waylay speaks {ours}",
            "Upgrade the cluster side with `waylay install --upgrade`, or use a "
            "waylay release that matches it.",
        )


class AgentNotArriving(ManagerError):
    code = "agent-not-arriving"

    def __init__(self, workload: str, reason: str) -> None:
        super().__init__(
            f"The traffic agent did not arrive in {workload!r}",
            "Look at the workload's pods and events (`kubectl describe`); the "
            "reason above usually names the fix.",
            detail=reason,
        )


class ManagerRefused(ManagerError):
    code = "manager-refused"

    def __init__(self, code: str, title: str, message: str, hint: str = "") -> None:
        super().__init__(title, hint or "See the message above.", detail=message)
        self.problem_code = code


# --------------------------------------------------------------------- local


class LocalError(WaylayError):
    code = "local"


class PortHeld(LocalError):
    code = "port-held"

    def __init__(self, port: int, who: str) -> None:
        super().__init__(
            f"Local port {port} is already used by {who}",
            "Pick another local port with --port, or stop what holds it "
            "(`waylay leave` if it is another intercept).",
        )
        self.port = port
        self.who = who


class NothingListening(LocalError):
    severity = "warning"
    code = "nothing-listening"

    def __init__(self, address: str, port: int) -> None:
        super().__init__(
            f"Nothing listens on {address}:{port} yet",
            "Start your local service there; intercepted traffic fails until it does.",
        )


class KeyringUnavailable(LocalError):
    code = "no-keyring"

    def __init__(self, reason: str = "") -> None:
        super().__init__(
            "No usable keyring backend to store the API key",
            "Install and unlock a keyring (e.g. `pip install keyrings.alt` or run a "
            "Secret Service such as gnome-keyring), or set WAYLAY_API_KEY in the "
            "environment instead.",
            detail=reason,
        )


class NotLoggedIn(LocalError):
    code = "not-logged-in"

    def __init__(self, context: str) -> None:
        super().__init__(
            f"Not logged in to the team-mode manager of context {context!r}",
            "Run `waylay login` with the API key your cluster admin gave you, "
            "or set WAYLAY_API_KEY.",
        )


class DaemonUnavailable(LocalError):
    code = "daemon"

    def __init__(self, socket_path: str, reason: str = "") -> None:
        super().__init__(
            f"Cannot talk to the waylay daemon at {socket_path}",
            "Run `waylay quit` and try again; the daemon is started on demand.",
            detail=reason,
        )


# ---------------------------------------------------------------------- spec


class InvalidSpec(WaylayError):
    code = "invalid-spec"

    def __init__(self, file: str, line: int | None, message: str) -> None:
        where = f"{file}:{line}" if line is not None else file
        super().__init__(
            f"{where}: {message}",
            "Fix the file; `waylay spec schema` prints the JSON Schema it must follow.",
        )
        self.file = file
        self.line = line
        self.message = message


# -------------------------------------------------------------------- remote


class RemoteError(WaylayError):
    """An error the per-user daemon reported; keeps the original code and severity."""

    def __init__(
        self, code: str, title: str, hint: str = "", *, detail: str = "", severity: str = "error"
    ) -> None:
        super().__init__(title, hint, detail=detail)
        self.remote_code = code
        self.remote_severity = severity

    def to_dict(self) -> dict[str, str]:
        data = super().to_dict()
        data["code"] = self.remote_code
        data["severity"] = self.remote_severity
        return data
