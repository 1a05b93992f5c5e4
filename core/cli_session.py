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

import anyio
from pydantic import SecretStr

from core import config, credentials, envfile
from core.cli_output import emit, print_error, table
from core.daemon_client import DaemonClient, remote_error
from core.errors import DaemonUnavailable, InvalidSpec, WaylayError
from core.protocol import AUTO_HEADER, ClientHello, InterceptInfo

if TYPE_CHECKING:
    from core.manager_client import ManagerClient

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


def _target(args: argparse.Namespace) -> tuple[str, str]:
    """(context name, kubeconfig path list) resolved here, so the daemon uses the same."""
    return config.resolve(args.context, args.kubeconfig)


def _with_daemon(fn: Callable[[DaemonClient], Awaitable[T]], *, start: bool = True) -> T:
    async def body() -> T:
        async with await DaemonClient.connect(start=start) as client:
            return await fn(client)

    return anyio.run(body)


def _progress(args: argparse.Namespace) -> Callable[[str], None]:
    def say(message: str) -> None:
        if args.output == "human":
            print(f"  … {message}", file=sys.stderr, flush=True)

    return say


def _describe(info: InterceptInfo) -> str:
    s = info.spec
    port = s.service_port_name or str(s.service_port)
    lines = [
        f"Intercept {s.name!r}: {s.workload_kind} {s.namespace}/{s.workload}, "
        f"service {s.service} port {port} -> {s.local_address}:{s.local_port}",
    ]
    if s.mechanism == "tcp":
        lines.append("  global: every connection to the service port comes to this machine")
    else:
        rules = [f"{k}: {v}" for k, v in s.headers.items()]
        if s.path is not None:
            rules.append(f"path {s.path.kind} {s.path.value}")
        lines.append("  personal: only requests matching " + ("; ".join(rules) or "everything"))
        if AUTO_HEADER in s.headers and not s.preview_url:
            lines.append(
                f"  set this header on your requests:  {AUTO_HEADER}: {s.headers[AUTO_HEADER]}"
            )
    if s.preview_url:
        lines.append(f"  preview URL: {s.preview_url}")
    lines.append(f"  state: {info.state}{f' ({info.message})' if info.message else ''}")
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


def _print_warnings(client: DaemonClient, args: argparse.Namespace) -> None:
    for warning in client.last_warnings:
        print_error(remote_error(warning), "human")


async def _intercept_one(
    client: DaemonClient,
    args: argparse.Namespace,
    request: dict[str, Any],
    context: str,
    kubeconfig: str,
) -> tuple[InterceptInfo, dict[str, str]]:
    result = await client.call(
        "intercept",
        {"context": context, "kubeconfig": kubeconfig, "request": request},
        progress=_progress(args),
    )
    _print_warnings(client, args)
    info = InterceptInfo.model_validate(result["intercept"])
    env: dict[str, str] = await client.call("env", {"name": info.spec.name, "context": context})
    return info, env


def _export_env(args: argparse.Namespace, env: dict[str, str]) -> None:
    if args.env_file:
        envfile.write_env(env, args.env_file, args.env_syntax)
    if args.env_json:
        envfile.write_env(env, args.env_json, as_json=True)


def _run_command(command: list[str], env: dict[str, str], cwd: str | None = None) -> int:
    merged = {**os.environ, **env}
    try:
        return subprocess.call(command, env=merged, cwd=cwd)
    except FileNotFoundError:
        raise InvalidSpec("(command)", None, f"{command[0]!r}: no such program")


def intercept(args: argparse.Namespace) -> int:
    context, kubeconfig = _target(args)
    command = [c for c in (args.command_ or []) if c != "--"]

    async def body(client: DaemonClient) -> tuple[InterceptInfo, dict[str, str]]:
        return await _intercept_one(client, args, _request_from_args(args), context, kubeconfig)

    info, env = _with_daemon(body)
    _export_env(args, env)
    emit({"intercept": info, "env_file": args.env_file}, args.output, _describe(info))
    if not command:
        return 0
    code = _run_command(command, env)
    _with_daemon(lambda c: c.call("leave", {"name": info.spec.name, "context": context}))
    return code


def leave(args: argparse.Namespace) -> int:
    context = args.context
    result = _with_daemon(
        lambda c: c.call("leave", {"name": args.name, "context": context}), start=False
    )
    info = InterceptInfo.model_validate(result["intercept"])
    emit(info, args.output, f"Left intercept {info.spec.name!r}; traffic goes to the app again.")
    return 0


def quit_(args: argparse.Namespace) -> int:
    try:
        _with_daemon(lambda c: c.call("quit"), start=False)
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
        data: dict[str, Any] | None = _with_daemon(lambda c: c.call("status"), start=False)
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
            info = InterceptInfo.model_validate(i)
            port = info.spec.service_port_name or str(info.spec.service_port)
            rows.append(
                [
                    s["context"],
                    info.spec.name,
                    f"{info.spec.namespace}/{info.spec.workload}",
                    f"{info.spec.service}:{port}",
                    f"{info.spec.local_address}:{info.spec.local_port}",
                    info.state,
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
    context, kubeconfig = _target(
        argparse.Namespace(context=spec.context or args.context, kubeconfig=args.kubeconfig)
    )
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

    async def body(client: DaemonClient) -> list[tuple[InterceptInfo, dict[str, str]]]:
        made = []
        for req in requests:
            made.append(await _intercept_one(client, args, req, context, kubeconfig))
        return made

    made = _with_daemon(body)
    env: dict[str, str] = {}
    for info, found in made:
        env.update(found)
        if args.output == "human":
            print(_describe(info))
    if spec.handler is None:
        emit([i for i, _ in made], args.output, "")
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
        names = [info.spec.name for info, _ in made]

        async def leave_all(client: DaemonClient) -> None:
            for name in names:
                try:
                    await client.call("leave", {"name": name, "context": context})
                except WaylayError as err:
                    print_error(err)

        _with_daemon(leave_all)


async def daemon_intercepts(context: str, kubeconfig: str) -> list[InterceptInfo]:
    """Everyone's intercepts, when the daemon runs and the manager answers; else []."""
    try:
        async with await DaemonClient.connect(start=False) as client:
            found = await client.call(
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
    from core.kube import Kube
    from core.manager_client import ManagerClient
    from core.session import client_name, kube_connector

    context, kubeconfig = _target(args)

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

    context, _ = _target(args)
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
    context, _ = _target(args)
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
