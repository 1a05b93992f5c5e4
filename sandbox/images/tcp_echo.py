"""``waylay/demo-tcp-echo``: echoes every byte back on ``$PORT`` (default 9000).

Each connection first gets one greeting line naming the pod, when ``GREETING``
is ``1``; otherwise it is a plain echo.
"""

from __future__ import annotations

import asyncio
import os

from sandbox.images._app import env_port, log, pod_ip, pod_name, wait_for_stop


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        if os.environ.get("GREETING") == "1":
            writer.write(f"hello from {pod_name()}\n".encode())
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main() -> None:
    host, port = pod_ip(), env_port("PORT", 9000)
    server = await asyncio.start_server(_echo, host, port)
    log(f"tcp-echo {pod_name()} listening on {host}:{port}")
    await wait_for_stop()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
