"""``waylay/demo-traffic``: keeps a few requests a second flowing through the ingress.

Environment: ``TARGET`` (``http://ADDRESS[:PORT]``, the ingress), ``HOSTS``
(comma-separated ``host/path`` pairs to cycle through, e.g.
``shop.waylay.local/orders,shop.waylay.local/catalog``), ``RATE`` (requests a
second, default 2). One line is logged per request.
"""

from __future__ import annotations

import asyncio
import os
import time

import aiohttp

from sandbox.images._app import log, wait_for_stop


async def _loop(target: str, pairs: list[tuple[str, str]], rate: float) -> None:
    period = 1.0 / max(rate, 0.01)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        index = 0
        while True:
            host, path = pairs[index % len(pairs)]
            index += 1
            started = time.monotonic()
            try:
                async with session.get(
                    target + path, headers={"Host": host, "User-Agent": "waylay-demo-traffic"}
                ) as response:
                    await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = f"error {exc.__class__.__name__}"
            log(f"GET {host}{path} {status} {1000 * (time.monotonic() - started):.0f}ms")
            await asyncio.sleep(max(period - (time.monotonic() - started), 0))


def _pairs(spec: str) -> list[tuple[str, str]]:
    pairs = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        host, _, path = item.partition("/")
        pairs.append((host, "/" + path))
    return pairs or [("localhost", "/")]


async def main() -> None:
    target = os.environ.get("TARGET", "").rstrip("/")
    if not target:
        raise SystemExit("set TARGET to the ingress URL, e.g. http://127.1.128.5")
    pairs = _pairs(os.environ.get("HOSTS", ""))
    rate = float(os.environ.get("RATE", "2"))
    log(f"sending {rate:g} requests/s to {target} for {', '.join(h + p for h, p in pairs)}")
    worker = asyncio.create_task(_loop(target, pairs, rate))
    await wait_for_stop()
    worker.cancel()


if __name__ == "__main__":
    asyncio.run(main())
