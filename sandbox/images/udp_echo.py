"""``waylay/demo-udp-echo``: answers every datagram on ``$PORT`` (default 9001)
with ``<pod>: <datagram>``."""

from __future__ import annotations

import asyncio
from typing import cast

from sandbox.images._app import env_port, log, pod_ip, pod_name, wait_for_stop


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(pod_name().encode() + b": " + data, addr)


async def main() -> None:
    host, port = pod_ip(), env_port("PORT", 9001)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Echo, local_addr=(host, port))
    log(f"udp-echo {pod_name()} listening on {host}:{port}/udp")
    await wait_for_stop()
    transport.close()


if __name__ == "__main__":
    asyncio.run(main())
