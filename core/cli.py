"""``waylay``: the command line. With no arguments it opens the TUI.

Every verb prints for people by default and as JSON or YAML with ``-o``.
Failures print the error's title, detail and hint and exit 1 — never a
traceback (set ``WAYLAY_DEBUG=1`` to get one for a bug report).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from core import cli_commands as commands
from core.cli_output import Output, emit, print_error
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

    def verb(name: str, help_: str, handler: Callable[..., Any]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, parents=[common])
        p.set_defaults(handler=handler)
        return p

    p = verb("list", "list workloads, their Services, agents and intercepts", commands.list_)
    p.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="every visible namespace")

    p = verb("namespaces", "list the namespaces you may see", commands.namespaces)

    p = verb("contexts", "list kubeconfig contexts, or switch to one", commands.contexts)
    p.add_argument("name", nargs="?", help="switch the current context to NAME")

    verb("status", "the context, the cluster and the waylay session", commands.status)

    p = verb(
        "sandbox",
        "run the built-in sandbox cluster (start|status|stop|serve ...)",
        commands.sandbox,
    )
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for `python -m sandbox`")

    p = verb(
        "demo", "start the demo sandbox (unless --current-context) and open the TUI", commands.demo
    )
    p.add_argument(
        "--current-context",
        action="store_true",
        help="use the current kubeconfig context instead of the sandbox",
    )
    p.add_argument("--dir", default=".sandbox", help="sandbox state directory")

    p = verb("spec", "intercept specification files", commands.spec)
    p.add_argument("action", choices=["schema", "check"])
    p.add_argument("file", nargs="?", help="the file to check (for `check`)")

    p = verb("login", "store the API key for a team-mode manager (per context)", commands.login)
    p.add_argument("--api-key", help="the key (default: prompt for it)")

    verb("logout", "forget the API key of the context", commands.logout)
    return parser


def _run_tui(args: argparse.Namespace) -> int:
    argv = [sys.executable, "-m", "tui"]
    if args.context:
        argv += ["--context", args.context]
    if args.kubeconfig:
        argv += ["--kubeconfig", args.kubeconfig]
    return subprocess.call(argv)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    output: Output = args.output
    try:
        if args.command is None:
            return _run_tui(args)
        return int(args.handler(args) or 0)
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
