"""Drive the real waylay TUI headless against the demo sandbox and write SVGs here.

    .venv/bin/python screenshots/make_screenshots.py     # or: make screenshots

What it does, in order, with real core, a real manager, agents and tunnels:

1. starts the demo sandbox (``python -m sandbox start --demo``) in a temporary
   directory and opens the TUI on its kubeconfig (140x42 cells), attached to
   a waylay daemon of its own, as `waylay` does;
2. ``error.svg``: `i` before the traffic manager is installed (it explains);
3. installs the manager (``core.install``) and starts a local HTTP server, the
   "developer's process";
4. ``main.svg``; every wizard step for a personal intercept of ``shop/orders``
   with a preview URL (``wizard-NN-<step>.svg``, the four preview prompts
   included) and its result (``wizard-result.svg``);
5. ``intercepts-two-users.svg``: a second user (bob) intercepts ``orders``
   with his own header;
6. ``traffic-busy.svg`` and ``traffic-detail.svg``: the traffic pane switched
   to all traffic through the agents (`a`), requests sent to the ``orders``
   Service, some carrying our header (routed here), some not (→ app, and the
   detail says why);
7. ``help.svg``; then leaves the intercept with ``l``, quits, and stops the
   sandbox.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import anyio.abc
from aiohttp import web
from textual.widgets import Input

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.daemon_client import DaemonClient  # noqa: E402
from core.install import InstallOptions, install  # noqa: E402
from core.kube import Kube  # noqa: E402
from core.protocol import InterceptSpec  # noqa: E402
from core.session import Session, kube_connector, kube_opener  # noqa: E402
from tui.app import WaylayApp  # noqa: E402
from tui.daemon_source import connect_daemon  # noqa: E402
from tui.screens.wizard import WizardScreen  # noqa: E402
from tui.source import ClusterSource  # noqa: E402
from tui.widgets.header_bar import HeaderBar  # noqa: E402
from tui.widgets.intercepts_pane import InterceptsPane  # noqa: E402
from tui.widgets.traffic_log import TrafficLog  # noqa: E402
from tui.widgets.workload_table import WorkloadTable  # noqa: E402

SIZE = (140, 42)
OUT = Path(__file__).resolve().parent
WAIT = 120.0


# ------------------------------------------------------------------ the sandbox


@contextlib.contextmanager
def demo_sandbox(keep: bool) -> Iterator[Path]:
    state = Path(tempfile.mkdtemp(prefix="waylay-shots-"))
    sandbox = [sys.executable, "-m", "sandbox"]
    subprocess.run([*sandbox, "start", "--demo", "--dir", str(state)], check=True, timeout=300)
    kubeconfig = state / "kubeconfig"
    deadline = time.monotonic() + 60
    while not kubeconfig.is_file():
        if time.monotonic() > deadline:
            raise SystemExit(f"the sandbox never wrote {kubeconfig}")
        time.sleep(0.2)
    try:
        yield kubeconfig
    finally:
        with contextlib.suppress(Exception):
            anyio.run(quit_daemon, daemon_socket(kubeconfig))
        if not keep:
            subprocess.run([*sandbox, "stop", "--dir", str(state)], check=False, timeout=120)
            shutil.rmtree(state, ignore_errors=True)


def daemon_socket(kubeconfig: Path) -> Path:
    """The TUI's daemon lives next to the sandbox's state, not the user's own."""
    return kubeconfig.parent / "daemon" / "daemon.sock"


async def quit_daemon(path: Path) -> None:
    """Leave what is left and stop the daemon (a failed run leaves nothing behind)."""
    async with await DaemonClient.connect(path, start=False) as daemon:
        await daemon.call("quit")


async def developer_process(tg: anyio.abc.TaskGroup) -> int:
    """What the developer runs locally: answers every request, says where it ran."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello from my laptop: {request.method} {request.path}\n")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()

    async def serve() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await runner.cleanup()

    tg.start_soon(serve)
    return int(runner.addresses[0][1])


def send_requests(url: str, header: tuple[str, str], count: int) -> None:
    """Half of them carry our intercept's header."""
    for i in range(count):
        request = urllib.request.Request(f"{url}/orders/{1000 + i}")
        if i % 2 == 0:
            request.add_header(*header)
        request.add_header("Authorization", "Bearer not-for-your-eyes")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(request, timeout=10).read()


# ---------------------------------------------------------------------- shots


class Camera:
    def __init__(self, app: WaylayApp, pilot: object) -> None:
        self.app = app
        self.pilot = pilot
        self.count = 0

    async def until(self, condition: Callable[[], object], what: str) -> None:
        deadline = anyio.current_time() + WAIT
        while not condition():
            if anyio.current_time() > deadline:
                self.app.save_screenshot("gave-up.svg", tempfile.gettempdir())
                raise SystemExit(
                    f"gave up waiting for {what}; the screen is in "
                    f"{Path(tempfile.gettempdir()) / 'gave-up.svg'}"
                )
            await self.pilot.pause(0.05)  # type: ignore[attr-defined]

    async def shot(self, name: str) -> None:
        await self.pilot.wait_for_scheduled_animations()  # type: ignore[attr-defined]
        await self.pilot.pause(0.2)  # type: ignore[attr-defined]
        self.app.save_screenshot(f"{name}.svg", str(OUT))
        self.count += 1
        print(f"  wrote screenshots/{name}.svg")


async def drive(kubeconfig: Path) -> None:
    async def connect() -> ClusterSource:
        return await connect_daemon(
            context=None, kubeconfig=str(kubeconfig), socket=daemon_socket(kubeconfig)
        )

    kube = Kube.from_kubeconfig(str(kubeconfig), None)
    app = WaylayApp(connect)
    async with anyio.create_task_group() as tg, app.run_test(size=SIZE) as pilot:
        cam = Camera(app, pilot)
        main = app.main
        table = main.query_one(WorkloadTable)
        header = main.query_one(HeaderBar)
        orders = "shop/Deployment/orders"
        await cam.until(lambda: orders in table.workloads, "the demo workloads")
        await cam.until(lambda: table.workloads[orders].ready == 3, "orders ready")
        await cam.until(lambda: header.session is not None, "the manager's answer")

        # 2. no traffic manager yet: the header says so and `i` explains
        table.move_cursor(row=table.get_row_index(orders))
        await pilot.press("i")
        await cam.until(lambda: app.screen.__class__.__name__ == "ErrorModal", "the error")
        await cam.shot("error")
        await pilot.press("escape")
        await cam.until(lambda: app.screen is main, "the main view")

        # 3. install the manager; the TUI's session finds it on its own
        print("  installing the traffic manager…")
        await anyio.to_thread.run_sync(lambda: install(kube, InstallOptions(timeout=120)))
        local = await developer_process(tg)
        await cam.until(lambda: header.session and header.session.healthy, "the manager")

        # 4. the main view and every wizard step
        await cam.shot("main")
        table.focus()
        table.move_cursor(row=table.get_row_index(orders))
        await pilot.press("i")
        await cam.until(lambda: isinstance(app.screen, WizardScreen), "the wizard")
        wizard = app.screen
        assert isinstance(wizard, WizardScreen)
        answers = {
            "local_port": ["ctrl+u", *str(local)],
            "scope": ["down"],
            "headers": [],
            "path": [],
            "preview": ["up"],  # yes: show the four preview prompts
        }
        while wizard.phase == "asking" and wizard.step is not None:
            step = wizard.step
            index = [s.id for s in wizard.wizard.steps()].index(step.id) + 1
            if step.id == "preview":  # let ingress detection answer first
                with anyio.move_on_after(15):
                    await cam.until(lambda: wizard.wizard.preview_defaults, "ingress defaults")
            await pilot.press(*answers.get(step.id, []))
            for field in wizard.query(Input):
                field.cursor_blink = False
            await cam.shot(f"wizard-{index:02d}-{step.id.replace('_', '-')}")
            await pilot.press("enter")
        await cam.until(lambda: wizard.phase != "running", "the intercept")
        await cam.shot("wizard-result")
        outcome = wizard.outcome
        if outcome is None:
            raise SystemExit("the intercept failed: see screenshots/wizard-result.svg")
        await pilot.press("enter")
        await cam.until(lambda: app.screen is main, "the main view")

        # 5. a second user on the same workload
        bob = Session(
            context=kube.context.name,
            connector=kube_connector(kube),
            opener=kube_opener(kube),
            name="bob@workstation-7",
        )
        await tg.start(bob.run)
        await bob.intercept(
            InterceptSpec(
                name="orders-bob", namespace="shop", workload="orders", service="orders",
                service_port=80, service_port_name="http", mechanism="http",
                headers={"x-dev": "bob"}, local_port=local,
            )
        )  # fmt: skip
        pane = main.query_one(InterceptsPane)
        await cam.until(lambda: pane.row_count >= 2, "bob's intercept")
        await cam.shot("intercepts-two-users")

        # 6. busy traffic
        service = kube.get("v1", "Service", "orders", "shop") or {}
        url = f"http://{service['spec']['clusterIP']}:80"
        name, value = next(iter(outcome.intercept.spec.headers.items()))
        log = main.query_one(TrafficLog)
        log.focus()
        await pilot.press("a")  # all traffic through the agents: unmatched rows too, and why

        def unmatched() -> bool:
            return any(e.routed == "app" for _serial, e in log.events)

        with anyio.fail_after(60):  # the watcher tunnel opens in the background
            while not unmatched():
                await anyio.to_thread.run_sync(send_requests, url, ("x-other", "1"), 1)
                await pilot.pause(0.2)
        await anyio.to_thread.run_sync(send_requests, url, (name, value), 30)
        await cam.until(lambda: log.row_count >= 30, "traffic events")
        await cam.shot("traffic-busy")
        await pilot.press("f", "enter")
        await cam.shot("traffic-detail")
        await pilot.press("escape", "f")

        # 7. help, leave, quit
        await pilot.press("question_mark")
        await cam.shot("help")
        await pilot.press("escape")
        pane.focus()
        pane.move_cursor(row=0)
        await pilot.press("l")
        await cam.until(
            lambda: not any(pane.is_mine(i) for i in pane.intercepts.values()), "leaving"
        )
        bob.stop()
        await pilot.press("q")
        await cam.until(lambda: not app.is_running, "exit")
        tg.cancel_scope.cancel()
    print(f"wrote {cam.count} screenshots to {OUT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-sandbox", action="store_true", help="leave the sandbox running")
    args = parser.parse_args()
    with demo_sandbox(args.keep_sandbox) as kubeconfig:
        anyio.run(drive, kubeconfig)


if __name__ == "__main__":
    main()
