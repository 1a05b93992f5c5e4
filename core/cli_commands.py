"""The bodies of the ``waylay`` verbs that need no session with the manager.

Each takes the parsed ``argparse.Namespace`` and returns an exit code; errors
are raised as ``core.errors`` and printed by ``core.cli.main``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from core import config, credentials
from core.cli_output import emit, table
from core.discovery import Discovery
from core.errors import ContextUnreachable, InvalidSpec, WaylayError
from core.models import NamespaceInfo, WorkloadInfo

__all__ = [
    "cluster_status",
    "contexts",
    "demo",
    "install",
    "list_",
    "logout",
    "namespaces",
    "sandbox",
    "spec",
    "status",
    "uninstall",
]


def _discover_workloads(args: argparse.Namespace) -> list[WorkloadInfo]:
    from core.cli_session import daemon_intercepts

    context, kubeconfig = config.resolve(args.context, args.kubeconfig)

    intercepts = daemon_intercepts(context, kubeconfig)

    async def body() -> list[WorkloadInfo]:
        async with await Discovery.connect(context, kubeconfig) as disc:
            namespace = None if args.all_namespaces else (args.namespace or disc.context.namespace)
            disc.set_intercepts(intercepts)
            return await disc.workloads(namespace)

    return anyio.run(body)


def _agent_label(w: WorkloadInfo) -> str:
    return {"none": "-", "injecting": "injecting", "ready": "ready", "partial": "partial"}[
        w.agent_state
    ]


def list_(args: argparse.Namespace) -> int:
    workloads = _discover_workloads(args)
    rows = [
        [
            w.namespace,
            w.name,
            w.kind,
            f"{w.ready}/{w.replicas}",
            ",".join(s.name for s in w.services) or "-",
            _agent_label(w),
            ",".join(
                f"{i.spec.name}({i.spec.service_port_name or i.spec.service_port})"
                for i in w.intercepts
            )
            or "-",
        ]
        for w in workloads
    ]
    human = (
        table(["NAMESPACE", "NAME", "KIND", "READY", "SERVICES", "AGENT", "INTERCEPTED"], rows)
        if rows
        else "No workloads found.\n"
    )
    emit(workloads, args.output, human)
    return 0


def namespaces(args: argparse.Namespace) -> int:
    async def body() -> list[NamespaceInfo]:
        async with await Discovery.connect(args.context, args.kubeconfig) as disc:
            return await disc.namespaces()

    found = anyio.run(body)
    emit(
        found,
        args.output,
        table(["NAME", "WORKLOADS"], [[n.name, n.workload_count] for n in found]),
    )
    return 0


def contexts(args: argparse.Namespace) -> int:
    if args.name:
        info = config.switch_context(args.name, args.kubeconfig)
        emit(info, args.output, f"Switched to context {info.name!r} (namespace {info.namespace}).")
        return 0
    current = ""
    try:
        current = config.current_context(args.kubeconfig).name
    except WaylayError:
        pass
    found = config.list_contexts(args.kubeconfig)
    rows = [
        ["*" if c.name == current else "", c.name, c.cluster, c.user, c.namespace, c.server]
        for c in found
    ]
    emit(
        {"current": current, "contexts": found},
        args.output,
        table(["CURRENT", "NAME", "CLUSTER", "USER", "NAMESPACE", "SERVER"], rows),
    )
    return 0


def cluster_status(args: argparse.Namespace) -> tuple[dict[str, object], str]:
    """(data, human text) about the context and whether its cluster answers."""
    from core.kube import Kube

    info = config.get_context(args.context, args.kubeconfig)
    data: dict[str, object] = {"context": info, "reachable": False, "version": None}
    kube = Kube.from_kubeconfig(args.kubeconfig, info.name)
    try:
        version = kube.version()
        data.update(reachable=True, version=version.get("gitVersion", ""))
    except ContextUnreachable as exc:
        data["error"] = exc.to_dict()
    finally:
        kube.close()
    cluster = (
        f"reachable ({data['version'] or 'unknown version'})"
        if data["reachable"]
        else "UNREACHABLE"
    )
    human = (
        f"Context:   {info.name} (user {info.user}, namespace {info.namespace})\n"
        f"Cluster:   {info.server} — {cluster}\n"
    )
    return data, human


def status(args: argparse.Namespace) -> int:
    data, human = cluster_status(args)
    emit(data, args.output, human)
    return 0 if data["reachable"] else 1


# --------------------------------------------------------------------- sandbox


def _sandbox_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "sandbox", *args]


def sandbox(args: argparse.Namespace) -> int:
    """Run the sandbox's own program; the product never imports it."""
    rest = [a for a in args.args if a != "--"]
    return subprocess.call(_sandbox_argv(*(rest or ["status"])))


def demo(args: argparse.Namespace) -> int:
    from core import demo_local

    env = dict(os.environ)
    if not args.current_context:
        state = Path(args.dir).resolve()
        started = subprocess.run(
            _sandbox_argv("start", "--demo", "--dir", str(state)), check=False, timeout=300
        )
        if started.returncode != 0:
            raise ContextUnreachable(
                "sandbox", str(state), "`python -m sandbox start --demo` failed; see its output"
            )
        kubeconfig = state / "kubeconfig"
        deadline = time.monotonic() + 60
        while not kubeconfig.is_file():
            if time.monotonic() > deadline:
                raise ContextUnreachable("sandbox", str(state), f"{kubeconfig} never appeared")
            time.sleep(0.2)
        env["KUBECONFIG"] = str(kubeconfig)
        # the demo's own daemon: it lives and dies with the demo, not with your real clusters
        env["WAYLAY_DAEMON_SOCKET"] = str(state / "daemon.sock")
        print("Installing the traffic manager into the demo cluster…", flush=True)
        already = demo_local.install_manager(str(kubeconfig), lambda step: print(f"  … {step}"))
        print("  ✓ the traffic manager " + ("was already installed" if already else "is ready"))
    argv = [sys.executable, "-m", "tui"]
    if args.context:
        argv += ["--context", args.context]
    with demo_local.WorkstationServer() as workstation:
        print(
            f"  ✓ your workstation app answers on http://127.0.0.1:{workstation.port} "
            "(the intercept wizard's default local port)",
            flush=True,
        )
        code = subprocess.call([*argv, "--local-port", str(workstation.port)], env=env)
    if not args.current_context:
        kept = demo_local.stop_idle_daemon(state / "daemon.sock")
        if kept:
            print(
                f"{kept} intercept(s) keep running in the demo's daemon, but the demo's "
                "workstation app stopped with the TUI. End them with:\n"
                f"  WAYLAY_DAEMON_SOCKET={state / 'daemon.sock'} {sys.argv[0]} quit"
            )
        print(
            "The demo sandbox keeps running (`make demo` reopens the TUI at once).\n"
            f"  export KUBECONFIG={state / 'kubeconfig'}   # use it with kubectl and waylay\n"
            f"  {sys.argv[0]} sandbox stop --dir {state}   # stop it and every pod process"
        )
    return code


# ------------------------------------------------------------------------ spec


def spec(args: argparse.Namespace) -> int:
    from core import spec as spec_module

    if args.action == "schema":
        sys.stdout.write(json.dumps(spec_module.schema(), indent=2) + "\n")
        return 0
    if not args.file:
        raise InvalidSpec("(no file)", None, "`waylay spec check FILE` needs a file")
    loaded = spec_module.load_spec(args.file)
    count = sum(len(w.intercepts) for w in loaded.workloads)
    emit(loaded, args.output, f"{args.file}: valid ({count} intercepts).")
    return 0


# ----------------------------------------------------------------- credentials


def _context_name(args: argparse.Namespace) -> str:
    return config.get_context(args.context, args.kubeconfig).name


def logout(args: argparse.Namespace) -> int:
    context = _context_name(args)
    removed = credentials.delete_api_key(context)
    emit(
        {"context": context, "removed": removed},
        args.output,
        f"Forgot the API key for {context!r}."
        if removed
        else f"No API key stored for {context!r}.",
    )
    return 0


# -------------------------------------------------------------------- install


def _install_options(args: argparse.Namespace, **extra: object) -> Any:
    from core.install import InstallOptions

    for option in ("preview_domain", "preview_tls_secret", "preview_ingress_class"):
        if getattr(args, option, ""):
            extra.setdefault(option, getattr(args, option))
    return InstallOptions(namespace=args.manager_namespace, timeout=args.timeout, **extra)  # type: ignore[arg-type]


def _say(args: argparse.Namespace) -> Callable[[str], None]:
    def say(message: str) -> None:
        if args.output == "human":
            print(f"  … {message}", file=sys.stderr, flush=True)

    return say


def _dry_run(args: argparse.Namespace) -> int:
    """The manifests ``install`` would apply, with fresh TLS material; the cluster is untouched."""
    from core.install import manifests, new_tls, render_yaml

    opts = _install_options(args, team=args.team)
    tls = new_tls(opts.namespace)
    if args.output == "json":
        sys.stdout.write(json.dumps(manifests(opts, tls), indent=2) + "\n")
    else:
        sys.stdout.write(render_yaml(opts, tls))
    return 0


def install(args: argparse.Namespace) -> int:
    from core.install import install as do_install
    from core.kube import Kube

    if args.dry_run:
        return _dry_run(args)
    kube = Kube.from_kubeconfig(args.kubeconfig, args.context)
    try:
        result = do_install(kube, _install_options(args, team=args.team), _say(args))
    finally:
        kube.close()
    human = ("Upgraded" if result.upgraded else "Installed") + " the traffic manager in "
    human += f"{args.manager_namespace!r}."
    if result.admin_key:
        human += (
            f"\nTeam mode admin key (shown once):\n\n  {result.admin_key}\n\n"
            "Store it with `waylay login`."
        )
    emit(
        {"upgraded": result.upgraded, "admin_key": result.admin_key, "steps": result.steps},
        args.output,
        human,
    )
    return 0


def uninstall(args: argparse.Namespace) -> int:
    from core.install import uninstall as do_uninstall
    from core.kube import Kube

    kube = Kube.from_kubeconfig(args.kubeconfig, args.context)
    try:
        do_uninstall(kube, _install_options(args), _say(args))
    finally:
        kube.close()
    emit(
        {"uninstalled": True},
        args.output,
        "Removed the agents, the manager and everything waylay created.",
    )
    return 0
