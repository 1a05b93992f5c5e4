"""TUI at scale: 10,000 workloads in 500 namespaces against the demo-sized cluster.

    .venv/bin/python -m pytest -q tests/bench/bench_tui.py -s     (or `make bench`)

Measured side by side in one run, headless at 140x42, with core's models
served from memory (the cluster's own cost is core's benchmark, not this one):

- time to first full view: app start until every workload row is in the table;
- filter keystroke latency: one key typed into the `/` filter until the table
  shows the narrowed rows (median of several keys);
- memory: peak Python allocations (tracemalloc) while the view is built.

Each figure is printed for both sizes and as the ratio big / demo.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from dataclasses import dataclass

from core.models import ServicePortInfo, ServiceRef, WorkloadInfo
from tests.tui.conftest import SIZE, app_over, until
from tests.tui.fakes import FakeSource, demo_workloads
from tui.widgets.workload_table import WorkloadTable

KINDS = ("Deployment", "StatefulSet", "ReplicaSet")


def many_workloads(namespaces: int = 500, per_namespace: int = 20) -> list[WorkloadInfo]:
    port = ServicePortInfo(name="http", port=80, target_port="http")
    return [
        WorkloadInfo(
            namespace=f"team-{n:03d}",
            name=f"svc-{n:03d}-{i:02d}",
            kind=KINDS[i % 3],  # type: ignore[arg-type]
            replicas=3,
            ready=3 if i % 5 else 2,
            services=[ServiceRef(name=f"svc-{n:03d}-{i:02d}", ports=[port])],
            agent_state="ready" if i % 7 == 0 else "none",
        )
        for n in range(namespaces)
        for i in range(per_namespace)
    ]


@dataclass
class Figures:
    rows: int
    first_view_s: float
    keystroke_ms: float
    peak_mib: float


async def peak_memory(workloads: list[WorkloadInfo]) -> float:
    """Peak traced allocations until the full view shows (a separate, slower run)."""
    app = app_over(FakeSource(workloads=workloads))
    tracemalloc.start()
    try:
        async with app.run_test(size=SIZE) as pilot:
            table = app.main.query_one(WorkloadTable)
            await until(pilot, lambda: table.row_count == len(workloads), timeout=600)
            return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


async def measure(workloads: list[WorkloadInfo], keys: str) -> Figures:
    app = app_over(FakeSource(workloads=workloads))
    started = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        table = app.main.query_one(WorkloadTable)
        await until(pilot, lambda: table.row_count == len(workloads), timeout=600)
        first_view = time.perf_counter() - started
        await pilot.press("slash")
        latencies = []
        typed = ""
        for key in keys:
            typed += key
            expected = sum(1 for w in workloads if typed in " ".join((w.namespace, w.name)))
            before = time.perf_counter()
            await pilot.press(key)
            await until(pilot, lambda t=typed: table.filter_text == t, timeout=600)
            latencies.append(time.perf_counter() - before)
            assert table.row_count >= expected
        await pilot.press("escape")
    peak = await peak_memory(workloads)
    return Figures(len(workloads), first_view, statistics.median(latencies) * 1000, peak)


async def test_ten_thousand_workloads_against_the_demo() -> None:
    demo = await measure(demo_workloads(), "ord")
    big = await measure(many_workloads(), "042")
    print()
    print(f"{'':24}{'demo':>12}{'10k/500ns':>14}{'ratio':>10}")
    for label, a, b, unit in (
        ("rows", demo.rows, big.rows, ""),
        ("first full view", demo.first_view_s, big.first_view_s, "s"),
        ("filter keystroke", demo.keystroke_ms, big.keystroke_ms, "ms"),
        ("peak memory", demo.peak_mib, big.peak_mib, "MiB"),
    ):
        ratio = b / a if a else float("nan")
        print(f"{label:24}{a:>10.2f}{unit:>2}{b:>12.2f}{unit:>2}{ratio:>10.1f}")
    assert big.rows == 10_000
