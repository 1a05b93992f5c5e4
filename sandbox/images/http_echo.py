"""``waylay/demo-http-echo``: an HTTP server that names its pod and echoes the request.

Environment: ``PORT`` (default 8080), ``METRICS_PORT`` (optional: a second
listener serving ``/metrics`` in the Prometheus text format), ``APP`` (the name
it answers with), ``POD_NAME``, ``POD_NAMESPACE``, ``POD_IP``.

Routes on ``PORT``:
- ``GET /healthz`` -> ``ok``;
- ``GET …/ws`` with an Upgrade -> a WebSocket that echoes every message;
- ``GET …/stream?chunks=N`` -> N lines, one every 100 ms (a streamed body);
  (``…``: any prefix, so the routes work behind an ingress path too)
- anything else -> JSON naming the app, pod and namespace, with the request's
  method, path, headers and body.
"""

from __future__ import annotations

import asyncio
import json
import os

from aiohttp import WSMsgType, web

from sandbox.images._app import env_port, log, pod_ip, pod_name, wait_for_stop

_requests = 0


def _identity() -> dict[str, str]:
    return {
        "app": os.environ.get("APP", "http-echo"),
        "pod": pod_name(),
        "namespace": os.environ.get("POD_NAMESPACE", ""),
        "podIP": pod_ip(),
    }


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _websocket(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            await ws.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    return ws


async def _stream(request: web.Request) -> web.StreamResponse:
    chunks = min(int(request.query.get("chunks", "5")), 1000)
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    for index in range(chunks):
        await response.write(f"{_identity()['pod']} chunk {index}\n".encode())
        await asyncio.sleep(0.1)
    await response.write_eof()
    return response


async def _echo(request: web.Request) -> web.StreamResponse:
    global _requests
    last = request.path.rstrip("/").rsplit("/", 1)[-1]
    if last == "ws" and request.headers.get("Upgrade", "").lower() == "websocket":
        return await _websocket(request)
    if last == "stream" and request.method == "GET":
        return await _stream(request)
    _requests += 1
    body = await request.read()
    reply = {
        **_identity(),
        "method": request.method,
        "path": request.path_qs,
        "headers": dict(request.headers),
        "body": body.decode("utf-8", "replace"),
    }
    log(f"{request.method} {request.path_qs} from {request.remote}")
    return web.Response(text=json.dumps(reply, indent=2) + "\n", content_type="application/json")


async def _metrics(request: web.Request) -> web.Response:
    text = (
        "# HELP demo_requests_total Requests served.\n"
        "# TYPE demo_requests_total counter\n"
        f'demo_requests_total{{pod="{pod_name()}"}} {_requests}\n'
    )
    return web.Response(text=text)


def _app() -> web.Application:
    app = web.Application()
    app.router.add_get("/healthz", _healthz)
    app.router.add_route("*", "/{tail:.*}", _echo)
    return app


async def main() -> None:
    host = pod_ip()
    port = env_port("PORT", 8080)
    runners = [web.AppRunner(_app(), access_log=None)]
    sites = [(runners[0], port)]
    metrics_port = env_port("METRICS_PORT", 0)
    if metrics_port:
        metrics = web.Application()
        metrics.router.add_get("/metrics", _metrics)
        runners.append(web.AppRunner(metrics, access_log=None))
        sites.append((runners[1], metrics_port))
    for runner, site_port in sites:
        await runner.setup()
        await web.TCPSite(runner, host, site_port).start()
        log(f"http-echo {pod_name()} listening on {host}:{site_port}")
    await wait_for_stop()
    log("SIGTERM: shutting down")
    for runner in runners:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
