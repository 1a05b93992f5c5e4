"""The ``waylay`` verbs that go through the daemon or the traffic manager.

``intercept``/``leave``/``quit``/``status`` talk to the per-user daemon
(started on demand), so intercepts outlive the command; ``login`` and
``apikey`` open a short session with the manager directly.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from core import envfile
from core.cli_output import emit, print_error, table
from core.daemon_line import LineClient, remote
from core.errors import DaemonUnavailable, InvalidSpec, LocalError, ResolveError, WaylayError

if TYPE_CHECKING:
    from pydantic import SecretStr

    from core.manager_client import ManagerClient
    from core.protocol import InterceptInfo

__all__ = [
    "apikey",
    "daemon_intercepts",
    "intercept",
    "leave",
    "login",
    "quit_",
    "run_spec",
    "status",
]

T = TypeVar("T")
AUTO_HEADER = "x-waylay-intercept-id"
"""``core.protocol.AUTO_HEADER`` (tests/core/test_daemon_line.py keeps them equal)."""

# The daemon verbs (intercept, leave, quit, status, run) import only the standard
# library and the light core modules: `waylay intercept` starts fast. The daemon
# resolves the context; pydantic, anyio and the kubernetes client load only for
# the verbs that talk to the manager or the cluster themselves.


def _kubeconfig(args: argparse.Namespace) -> str:
    """The kubeconfig files in effect, made explicit for the daemon (see ``core.config``)."""
    raw = args.kubeconfig or os.environ.get("KUBECONFIG", "")
    files = [str(Path(p).expanduser()) for p in raw.split(os.pathsep) if p]
    return os.pathsep.join(files) or str(Path("~/.kube/config").expanduser())


def _target(args: argparse.Namespace) -> tuple[str | None, str]:
    """(context as given, kubeconfig files): the daemon makes the context explicit."""
    return args.context, _kubeconfig(args)


def _resolved(args: argparse.Namespace) -> tuple[str, str]:
    """(context name, kubeconfig files), resolved here (for direct manager sessions)."""
    from core import config

    return config.resolve(args.context, args.kubeconfig)


def _daemon(*, start: bool = True) -> LineClient:
    return LineClient.connect(start=start)


def _progress(args: argparse.Namespace) -> Callable[[str], None]:
    def say(message: str) -> None:
        if args.output == "human":
            print(f"  … {message}", file=sys.stderr, flush=True)

    return say


def _describe(info: dict[str, Any]) -> str:
    """An intercept (``InterceptInfo`` as JSON) for people."""
    s = info["spec"]
    port = s.get("service_port_name") or str(s.get("service_port"))
    lines = [
        f"Intercept {s['name']!r}: {s['workload_kind']} {s['namespace']}/{s['workload']}, "
        f"service {s['service']} port {port} -> {s['local_address']}:{s['local_port']}",
    ]
    headers: dict[str, str] = s.get("headers") or {}
    if s.get("mechanism") == "tcp":
        lines.append("  global: every connection to the service port comes to this machine")
    else:
        rules = [f"{k}: {v}" for k, v in headers.items()]
        if s.get("path"):
            rules.append(f"path {s['path']['kind']} {s['path']['value']}")
        lines.append("  personal: only requests matching " + ("; ".join(rules) or "everything"))
        if AUTO_HEADER in headers and not s.get("preview_url"):
            lines.append(
                f"  set this header on your requests:  {AUTO_HEADER}: {headers[AUTO_HEADER]}"
            )
    if s.get("preview_url"):
        lines.append(f"  preview URL: {s['preview_url']}")
    message = info.get("message")
    lines.append(f"  state: {info['state']}{f' ({message})' if message else ''}")
    return "\n".join(lines)


def _request_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": args.name,
        "namespace": args.namespace,
        "workload": args.workload,
        "service": args.service,
        "port": args.port,
        "address": args.address,
        "mechanism": args.mechanism,
        "http_header": args.http_header or [],
        "http_path_equal": args.http_path_equal,
        "http_path_prefix": args.http_path_prefix,
        "http_path_regex": args.http_path_regex,
        "preview_url": None if args.preview_url is None else args.preview_url == "true",
        "ingress_host": args.ingress_host,
        "ingress_port": args.ingress_port,
        "ingress_tls": args.ingress_tls,
        "ingress_l5": args.ingress_l5,
    }


def _print_warnings(client: LineClient) -> None:
    for warning in client.last_warnings:
        print_error(remote(warning), "human")


def _intercept_one(
    client: LineClient,
    args: argparse.Namespace,
    request: dict[str, Any],
    context: str | None,
    kubeconfig: str,
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(the context's name, the intercept as JSON, the workload's environment)."""
    result = client.call(
        "intercept",
        {"context": context, "kubeconfig": kubeconfig, "request": request},
        progress=_progress(args),
    )
    _print_warnings(client)
    info: dict[str, Any] = result["intercept"]
    name = str(result.get("context") or context or "")
    env: dict[str, str] = client.call("env", {"name": info["spec"]["name"], "context": name})
    return name, info, env


def _env_targets(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(flag, path) of the env files asked for; refused up front when one cannot be
    written, so a bad path never leaves an intercept behind."""
    flags = (("--env-file", args.env_file), ("--env-json", args.env_json))
    wanted: list[tuple[str, str]] = [(flag, path) for flag, path in flags if path]
    for flag, path in wanted:
        parent = Path(path).expanduser().absolute().parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise LocalError(
                f"{flag} {path}: cannot write there ({parent} is not a writable folder)",
                f"Create {parent} first, or give {flag} a path in a folder you can write to.",
            )
    return wanted


def _export_env(args: argparse.Namespace, env: dict[str, str]) -> None:
    for flag, path in _env_targets(args):
        try:
            if flag == "--env-json":
                envfile.write_env(env, path, as_json=True)
            else:
                envfile.write_env(env, path, args.env_syntax)
        except OSError as exc:
            raise LocalError(
                f"{flag} {path}: cannot write it ({exc.strerror or exc})",
                f"Give {flag} a path you can write to; the intercept was left.",
            ) from exc


def _run_command(command: list[str], env: dict[str, str], cwd: str | None = None) -> int:
    merged = {**os.environ, **env}
    try:
        return subprocess.call(command, env=merged, cwd=cwd)
    except FileNotFoundError:
        raise InvalidSpec("(command)", None, f"{command[0]!r}: no such program")


def intercept(args: argparse.Namespace) -> int:
    context, kubeconfig = _target(args)
    command = [c for c in (args.command_ or []) if c != "--"]
    _env_targets(args)
    with _daemon() as client:
        name, info, env = _intercept_one(
            client, args, _request_from_args(args), context, kubeconfig
        )
        try:
            _export_env(args, env)
        except LocalError:  # never leave an intercept the user was told failed
            client.call("leave", {"name": info["spec"]["name"], "context": name})
            raise
    emit({"intercept": info, "env_file": args.env_file}, args.output, _describe(info))
    if not command:
        return 0
    try:
        return _run_command(command, env)
    finally:
        with _daemon() as client:
            client.call("leave", {"name": info["spec"]["name"], "context": name})


def leave(args: argparse.Namespace) -> int:
    try:
        client = _daemon(start=False)
    except DaemonUnavailable:
        raise ResolveError(
            f"No intercept named {args.name!r}",
            "The waylay daemon is not running, so you hold no intercepts "
            "(`waylay intercept` starts it).",
        )
    with client:
        result = client.call("leave", {"name": args.name, "context": args.context})
    info = result["intercept"]
    emit(
        info,
        args.output,
        f"Left intercept {info['spec']['name']!r}; traffic goes to the app again.",
    )
    return 0


def revoke(args: argparse.Namespace) -> int:
    context, kubeconfig = _target(args)
    with _daemon() as client:
        info = client.call("revoke", {"id": args.id, "context": context, "kubeconfig": kubeconfig})
    emit(
        info,
        args.output,
        f"Revoked intercept {info['id']!r} of {info['owner']}; its traffic goes to the app again.",
    )
    return 0


def quit_(args: argparse.Namespace) -> int:
    try:
        with _daemon(start=False) as client:
            client.call("quit")
    except DaemonUnavailable:
        emit({"running": False}, args.output, "The waylay daemon is not running.")
        return 0
    emit({"stopped": True}, args.output, "Left every intercept and stopped the waylay daemon.")
    return 0


def status(args: argparse.Namespace) -> int:
    """The context and its cluster, then the daemon's sessions and intercepts."""
    from core.cli_commands import cluster_status

    cluster, human = cluster_status(args)
    code = 0 if cluster["reachable"] else 1
    try:
        with _daemon(start=False) as client:
            data: dict[str, Any] | None = client.call("status")
    except DaemonUnavailable:
        data = None
    if data is None:
        human += "Daemon:    not running (started by `waylay intercept`)\n"
    else:
        human += _daemon_text(data)
    emit({**cluster, "daemon": data}, args.output, human)
    return code


def _daemon_text(data: dict[str, Any]) -> str:
    rows = []
    for s in data["sessions"]:
        for i in s["intercepts"]:
            spec = i["spec"]
            port = spec.get("service_port_name") or str(spec.get("service_port"))
            rows.append(
                [
                    s["context"],
                    spec["name"],
                    f"{spec['namespace']}/{spec['workload']}",
                    f"{spec['service']}:{port}",
                    f"{spec['local_address']}:{spec['local_port']}",
                    i["state"],
                ]
            )
    sessions = ", ".join(
        f"{s['context']} ({s['mode'] or '?'}, {'connected' if s['connected'] else 'reconnecting'})"
        for s in data["sessions"]
    )
    text = f"Daemon:    pid {data['pid']}, sessions: {sessions or 'none'}\n"
    if rows:
        text += table(["CONTEXT", "INTERCEPT", "WORKLOAD", "SERVICE:PORT", "LOCAL", "STATE"], rows)
    return text


def run_spec(args: argparse.Namespace) -> int:
    """``waylay run FILE``: every intercept of the spec, then the handler, then leave."""
    from core.spec import load_spec

    spec = load_spec(args.file)
    context, kubeconfig = spec.context or args.context, _kubeconfig(args)
    requests = []
    for w in spec.workloads:
        for entry in w.intercepts:
            headers: list[str] = []
            if entry.headers == "auto" or entry.headers == "all":
                headers = [entry.headers]
            elif isinstance(entry.headers, dict):
                headers = [f"{k}={v}" for k, v in entry.headers.items()]
            mechanism = "tcp" if entry.global_ else ("http" if entry.global_ is False else None)
            requests.append(
                {
                    "name": entry.name or w.name,
                    "workload": w.name if entry.name else None,
                    "workload_kind": w.kind,
                    "namespace": spec.namespace,
                    "service": entry.service,
                    "port": f"{entry.local_port}:{entry.port}"
                    if entry.port is not None
                    else str(entry.local_port),
                    "address": entry.local_address,
                    "mechanism": mechanism,
                    "http_header": headers,
                    "http_path_equal": entry.path_equal,
                    "http_path_prefix": entry.path_prefix,
                    "http_path_regex": entry.path_regex,
                    "preview_url": entry.preview_url,
                }
            )

    made: list[tuple[str, dict[str, Any], dict[str, str]]] = []
    with _daemon() as client:
        for req in requests:
            made.append(_intercept_one(client, args, req, context, kubeconfig))
    env: dict[str, str] = {}
    for _, info, found in made:
        env.update(found)
        if args.output == "human":
            print(_describe(info))
    if spec.handler is None:
        emit([i for _, i, _ in made], args.output, "")
        return 0
    here = Path(args.file).resolve().parent  # relative paths in the file are relative to it
    cwd = here / spec.handler.cwd if spec.handler.cwd else None
    if spec.handler.env_file:
        envfile.write_env(env, here / spec.handler.env_file, spec.handler.env_syntax)
    command = spec.handler.command
    argv = command if isinstance(command, list) else ["/bin/sh", "-c", command]
    try:
        return _run_command(argv, env, str(cwd) if cwd else None)
    finally:
        with _daemon() as client:
            for where, info, _ in made:
                try:
                    client.call("leave", {"name": info["spec"]["name"], "context": where})
                except WaylayError as err:
                    print_error(err)


def daemon_intercepts(context: str, kubeconfig: str) -> list[InterceptInfo]:
    """Everyone's intercepts, when the daemon runs and the manager answers; else []."""
    from core.protocol import InterceptInfo

    try:
        with _daemon(start=False) as client:
            found = client.call(
                "intercepts", {"all": True, "context": context, "kubeconfig": kubeconfig}
            )
    except WaylayError:
        return []
    return [InterceptInfo.model_validate(i) for i in found]


# ----------------------------------------------------------- direct sessions


def _with_manager(
    args: argparse.Namespace, api_key: SecretStr | None, fn: Callable[[ManagerClient], Awaitable[T]]
) -> T:
    # the kubernetes client and aiohttp load only for the verbs that need them
    import anyio

    from core.kube import Kube
    from core.manager_client import ManagerClient
    from core.protocol import ClientHello
    from core.session import client_name, kube_connector

    context, kubeconfig = _resolved(args)

    async def body() -> T:
        kube = await anyio.to_thread.run_sync(Kube.from_kubeconfig, kubeconfig, context)
        try:
            hello = ClientHello(
                client=client_name(), api_key=api_key.get_secret_value() if api_key else None
            )
            async with (
                kube_connector(kube)() as url,
                ManagerClient.open(url, hello, context=context) as client,
            ):
                return await fn(client)
        finally:
            kube.close()

    return anyio.run(body)


def login(args: argparse.Namespace) -> int:
    import getpass

    from pydantic import SecretStr

    from core import credentials

    context, _ = _resolved(args)
    raw = args.api_key or getpass.getpass(f"API key for context {context!r}: ")
    key = SecretStr(raw.strip())
    if not key.get_secret_value():
        raise InvalidSpec("(api key)", None, "the API key is empty")

    async def check(client: ManagerClient) -> dict[str, str]:
        return {"mode": client.welcome.mode, "identity": client.welcome.identity}

    who = _with_manager(args, key, check)
    credentials.store_api_key(context, key)
    note = (
        ""
        if who["mode"] == "team"
        else " (the manager runs in single-user mode: no key needed yet)"
    )
    emit(
        {"context": context, **who},
        args.output,
        f"Logged in to {context!r} as {who['identity']}{note}.",
    )
    return 0


def apikey(args: argparse.Namespace) -> int:
    from core import credentials

    context, _ = _resolved(args)
    key = credentials.get_api_key(context)

    async def act(client: ManagerClient) -> Any:
        if args.action == "create":
            return await client.request("apikey-create", {"user": args.user, "admin": args.admin})
        if args.action == "revoke":
            return await client.request("apikey-revoke", {"id": args.id})
        return await client.request("apikey-list")

    result = _with_manager(args, key, act)
    if args.action == "create":
        human = (
            f"API key for {result.get('user')} (id {result.get('id')}):\n\n"
            f"  {result.get('key')}\n\n"
            "It is shown once; give it to its owner for `waylay login`."
        )
    elif args.action == "revoke":
        human = (
            f"Revoked key {result.get('id')}; {result.get('sessions_ended', 0)} session(s) ended."
        )
    else:
        human = table(
            ["ID", "USER", "ADMIN"], [[k.get("id"), k.get("user"), k.get("admin")] for k in result]
        )
    emit(result, args.output, human)
    return 0
