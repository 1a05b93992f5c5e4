"""``waylay``: the command line. With no arguments it opens the TUI.

Every verb prints for people by default and as JSON or YAML with ``-o``.
Failures print the error's title, detail and hint and exit 1 — never a
traceback (set ``WAYLAY_DEBUG=1`` to get one for a bug report).
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence

from core.cli_output import Output, emit, print_error
from core.envfile import SYNTAXES
from core.errors import WaylayError

__all__ = ["build_parser", "main"]


def _global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument(
        "-o",
        "--output",
        choices=["human", "json", "yaml"],
        default="human",
        help="output format (default: human)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="waylay",
        description="Route traffic bound for a Kubernetes workload to your machine. "
        "Without a command: the terminal UI.",
    )
    _global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common)

    def verb(name: str, help_: str, handler: str) -> argparse.ArgumentParser:
        """``handler`` is ``module:function``, imported only when the verb runs."""
        p = sub.add_parser(name, help=help_, description=help_, parents=[common])
        p.set_defaults(handler=handler)
        return p

    p = verb(
        "list", "list workloads, their Services, agents and intercepts", "core.cli_commands:list_"
    )
    p.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="every visible namespace")

    p = verb("namespaces", "list the namespaces you may see", "core.cli_commands:namespaces")

    p = verb("contexts", "list kubeconfig contexts, or switch to one", "core.cli_commands:contexts")
    p.add_argument("name", nargs="?", help="switch the current context to NAME")

    verb(
        "status",
        "the context, the cluster and the waylay daemon's intercepts",
        "core.cli_session:status",
    )

    p = verb("traffic", "follow the traffic the agents report", "core.cli_traffic:traffic")
    p.add_argument(
        "--all",
        action="store_true",
        help="also everyone's traffic through the agents (metadata only), "
        "with why unmatched requests missed",
    )
    p.add_argument("--count", type=int, default=0, help="stop after N events (default: follow)")

    p = verb(
        "intercept", "route a workload's traffic to this machine", "core.cli_session:intercept"
    )
    p.add_argument(
        "name",
        help="the workload (the intercept is then named WORKLOAD-NAMESPACE), "
        "or the intercept's name when --workload is given",
    )
    p.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    p.add_argument(
        "--workload", help="the workload to intercept (NAME is then the intercept's name)"
    )
    p.add_argument("--service", help="the Service, when several select the workload")
    p.add_argument(
        "--port",
        help="LOCAL[:SVCPORT]: local port, and the service port name or number "
        "(needed when the Service has several ports; default local port 8080)",
    )
    p.add_argument("--address", default="127.0.0.1", help="local address to send traffic to")
    p.add_argument(
        "--mechanism",
        choices=["tcp", "http"],
        help="tcp: every connection (global); http: matching requests (personal)",
    )
    p.add_argument(
        "--http-header",
        action="append",
        metavar="KEY=VALUE|auto|all",
        help="match requests by header (repeatable); auto: x-waylay-intercept-id",
    )
    paths = p.add_mutually_exclusive_group()
    paths.add_argument("--http-path-equal", metavar="PATH")
    paths.add_argument("--http-path-prefix", metavar="PATH")
    paths.add_argument("--http-path-regex", metavar="REGEX")
    p.add_argument(
        "--preview-url",
        choices=["true", "false"],
        nargs="?",
        const="true",
        help="make a shareable preview URL (default: true in team mode)",
    )
    p.add_argument(
        "--ingress-host",
        metavar="NAME.NAMESPACE",
        help="preview: the ingress Service (default: detected)",
    )
    p.add_argument("--ingress-port", type=int, help="preview: the ingress port (default: detected)")
    p.add_argument(
        "--ingress-tls", action="store_true", default=None, help="preview: the ingress speaks TLS"
    )
    p.add_argument(
        "--ingress-l5", metavar="HOST", help="preview: Host header and TLS SNI (default: detected)"
    )
    p.add_argument("--env-file", help="write the workload's environment to this file")
    p.add_argument(
        "--env-syntax",
        choices=list(SYNTAXES),
        default="docker",
        help="syntax of --env-file (default: docker)",
    )
    p.add_argument("--env-json", help="write the workload's environment as JSON to this file")
    p.set_defaults(command_=[])
    p.epilog = "-- CMD ...: run CMD with the workload's environment; leave when it exits"

    p = verb(
        "leave", "end an intercept: its traffic goes back to the app", "core.cli_session:leave"
    )
    p.add_argument("name", help="the intercept's name (see `waylay status`)")

    p = verb(
        "revoke",
        "end someone else's intercept (admin in team mode)",
        "core.cli_session:revoke",
    )
    p.add_argument("id", help="the intercept's id (named in a conflict, or `waylay list -o json`)")

    verb("quit", "leave every intercept and stop the waylay daemon", "core.cli_session:quit_")

    p = verb("run", "carry out an intercept specification file", "core.cli_session:run_spec")
    p.add_argument("file", help="the YAML file (`waylay spec schema` describes it)")

    p = verb(
        "install",
        "install or upgrade the traffic manager (cluster-admin)",
        "core.cli_commands:install",
    )
    p.add_argument("--team", action="store_true", help="team mode: API keys, personal intercepts")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the manifests (YAML; a JSON list with -o json) and change nothing",
    )
    p.add_argument("--manager-namespace", default="waylay", help="where the manager runs")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the manager")
    p.add_argument(
        "--preview-domain",
        default="",
        metavar="D",
        help="serve preview URLs in the cluster as <token>.D (an Ingress for *.D is created); "
        "without it, preview URLs are served from the workstation",
    )
    p.add_argument("--preview-tls-secret", default="", metavar="SECRET", help="TLS Secret for *.D")
    p.add_argument(
        "--preview-ingress-class", default="", metavar="CLASS", help="ingressClassName for *.D"
    )

    p = verb(
        "uninstall",
        "remove agents, the manager and everything waylay created",
        "core.cli_commands:uninstall",
    )
    p.add_argument("--manager-namespace", default="waylay", help="where the manager runs")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for agents to go")

    p = verb("apikey", "manage team-mode API keys (admin key required)", "core.cli_session:apikey")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("--user", help="whose key (create)")
    p.add_argument("--admin", action="store_true", help="an admin key (create)")
    p.add_argument("--id", help="the key id (revoke)")

    p = verb(
        "sandbox",
        "run the built-in sandbox cluster (start|status|stop|serve ...)",
        "core.cli_commands:sandbox",
    )
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for `python -m sandbox`")

    p = verb(
        "demo",
        "start the demo sandbox (unless --current-context) and open the TUI",
        "core.cli_commands:demo",
    )
    p.add_argument(
        "--current-context",
        action="store_true",
        help="use the current kubeconfig context instead of the sandbox",
    )
    p.add_argument("--dir", default=".sandbox", help="sandbox state directory")

    p = verb("spec", "intercept specification files", "core.cli_commands:spec")
    p.add_argument("action", choices=["schema", "check"])
    p.add_argument("file", nargs="?", help="the file to check (for `check`)")

    p = verb(
        "login",
        "check an API key with the manager and store it (per context)",
        "core.cli_session:login",
    )
    p.add_argument("--api-key", help="the key (default: prompt for it)")

    verb("logout", "forget the API key of the context", "core.cli_commands:logout")
    return parser


def _load(handler: str) -> Callable[[argparse.Namespace], int]:
    module, _, name = handler.partition(":")
    fn: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), name)
    return fn


def _run_tui(args: argparse.Namespace) -> int:
    argv = [sys.executable, "-m", "tui"]
    if args.context:
        argv += ["--context", args.context]
    if args.kubeconfig:
        argv += ["--kubeconfig", args.kubeconfig]
    return subprocess.call(argv)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    trailing: list[str] = []
    if "--" in raw and raw[:1] != ["sandbox"]:
        cut = raw.index("--")
        raw, trailing = raw[:cut], raw[cut + 1 :]
    args = parser.parse_args(raw)
    if trailing:
        if args.command != "intercept":
            parser.error("`-- CMD` is only for `waylay intercept`")
        args.command_ = trailing
    if args.command == "apikey":
        if args.action == "revoke" and not args.id:
            parser.error("`waylay apikey revoke` needs --id ID (`waylay apikey list` shows them)")
        if args.action == "create" and not args.user:
            parser.error("`waylay apikey create` needs --user NAME (whose key it is)")
    output: Output = args.output
    try:
        if args.command is None:
            return _run_tui(args)
        return int(_load(args.handler)(args) or 0)
    except WaylayError as err:
        print_error(err, output)
        return 0 if err.severity == "warning" else 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: say so plainly, keep the traceback for reports
        if os.environ.get("WAYLAY_DEBUG"):
            traceback.print_exc()
        emit(
            {"error": {"code": "internal", "title": str(exc)}},
            output,
            f"Error: unexpected {type(exc).__name__}: {exc}\n"
            "  → This is a bug in waylay; rerun with WAYLAY_DEBUG=1 and report the traceback.",
            sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
