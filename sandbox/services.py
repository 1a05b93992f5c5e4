"""Services as loopback forwarders: what kube-proxy does, for one machine.

For every port of every Service with a ClusterIP the proxy listens on
``clusterIP:port`` (TCP, or UDP), and a LoadBalancer Service also gets an
ingress address of its own (``status.loadBalancer.ingress[0].ip``) with the
same ports. Each new connection (or UDP client) goes to one ready endpoint,
round-robin (or by client address with ``sessionAffinity: ClientIP``).

Backends come from the Service's ``Endpoints`` at connect time, as kube-proxy
reads them: the port of the subset whose port name matches the Service port,
and only ``addresses`` (ready), never ``notReadyAddresses``. A named
``targetPort`` is resolved against each endpoint's pod (``targetRef``), so a
pod whose port was renamed is reached on whatever port now carries the name.
Headless Services (``clusterIP: None``) get no listener. A LoadBalancer's
address also serves each port's ``nodePort``, which needs no privileges.

Ports below 1024 need privileges on most machines; a port the proxy cannot
bind is reported as a Warning Event on the Service rather than failing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, cast

from sandbox.errors import ApiError
from sandbox.ipam import Ipam
from sandbox.kubelet_api import ClusterAPI, Obj
from sandbox.kubelet_events import EventRecorder
from sandbox.kubelet_probes import resolve_port

__all__ = ["ServiceProxy", "backends_for"]

log = logging.getLogger(__name__)

_UDP_IDLE = 60.0
_CONNECT_TIMEOUT = 5.0
_CHUNK = 256 * 1024

Key = tuple[str, str]  # namespace, name
Bind = tuple[str, int, str]  # ip, port, protocol


def _pod_port(pod: Obj, name: str) -> int | None:
    for container in (pod.get("spec") or {}).get("containers") or []:
        try:
            return resolve_port(name, container)
        except ValueError:
            continue
    return None


def backends_for(store: Any, service: Obj, port: Obj) -> list[tuple[str, int]]:
    """Ready ``(ip, port)`` pairs for one Service port, from its Endpoints."""
    meta = service["metadata"]
    namespace, name = meta.get("namespace"), meta["name"]
    target = port.get("targetPort", port.get("port"))
    named = isinstance(target, str) and not target.isdigit()
    protocol = port.get("protocol", "TCP")
    endpoints = store.get("endpoints", namespace, name)
    found: list[tuple[str, int]] = []
    for subset in (endpoints or {}).get("subsets") or []:
        ports = [p for p in subset.get("ports") or [] if p.get("protocol", "TCP") == protocol]
        match = [p for p in ports if p.get("name", "") == port.get("name", "")]
        if not match and len(ports) == 1 and not port.get("name"):
            match = ports
        for address in subset.get("addresses") or []:
            number = int(match[0]["port"]) if match else None
            ref = address.get("targetRef") or {}
            if named and ref.get("kind", "Pod") == "Pod" and ref.get("name"):
                pod = store.get("pods", ref.get("namespace") or namespace, ref["name"])
                if pod is not None:
                    number = _pod_port(pod, str(target))
            if number is not None:
                found.append((str(address["ip"]), number))
    return found


@dataclass
class _Listener:
    bind: Bind
    server: asyncio.base_events.Server | None = None
    udp: asyncio.DatagramTransport | None = None

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.udp is not None:
            self.udp.close()


@dataclass
class _ServicePorts:
    listeners: dict[Bind, _Listener] = field(default_factory=dict)
    lb_ip: str | None = None
    failed: set[Bind] = field(default_factory=set)


class ServiceProxy:
    """Keeps one listener per (address, port, protocol) of every Service."""

    def __init__(self, cluster: ClusterAPI, ipam: Ipam, *, events: EventRecorder | None = None):
        self._cluster = cluster
        self._ipam = ipam
        self._events = events or EventRecorder(cluster, host="kube-proxy")
        self._own_events = events is None
        self._services: dict[Key, _ServicePorts] = {}
        self._round_robin: dict[tuple[Key, str, int], int] = {}
        self._pending: dict[Key, Obj | None] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        if self._own_events:
            self._events.start()
        self._cluster.subscribe(self._on_change)
        for service in self._cluster.store.list("services"):
            self._on_change("ADDED", "services", service)
        self._task = asyncio.create_task(self._reconcile_loop(), name="service proxy")
        await self.settle()

    async def settle(self) -> None:
        """Wait until every change seen so far is applied (tests, start-up)."""
        await self._idle.wait()

    async def stop(self) -> None:
        unsubscribe = getattr(self._cluster, "unsubscribe", None)
        if unsubscribe is not None:
            unsubscribe(self._on_change)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for ports in self._services.values():
            for listener in ports.listeners.values():
                listener.close()
        self._services.clear()
        for writer in list(self._connections):  # their relays then end on their own
            writer.transport.abort()
        if self._own_events:
            await self._events.close()

    # ------------------------------------------------------------- changes

    def _on_change(self, event: str, resource: str, obj: Obj) -> None:
        if resource != "services":
            return
        meta = obj["metadata"]
        key = (str(meta.get("namespace") or ""), str(meta["name"]))
        self._pending[key] = None if event == "DELETED" else obj
        self._idle.clear()
        self._wake.set()

    async def _reconcile_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                key = next(iter(self._pending))
                service = self._pending.pop(key)
                try:
                    await self._reconcile(key, service)
                except Exception:  # keep serving the other Services
                    log.exception("service %s/%s not reconciled", *key)
            self._idle.set()

    async def _reconcile(self, key: Key, service: Obj | None) -> None:
        current = self._services.setdefault(key, _ServicePorts())
        wanted: dict[Bind, Obj] = {}
        spec = (service or {}).get("spec") or {}
        cluster_ip = spec.get("clusterIP")
        if service is not None and cluster_ip and cluster_ip != "None":
            addresses = [str(cluster_ip)]
            if spec.get("type") == "LoadBalancer":
                addresses.append(await self._lb_address(key, current, service))
            for port in spec.get("ports") or []:
                protocol = str(port.get("protocol", "TCP"))
                if protocol not in ("TCP", "UDP"):
                    continue
                for address in addresses:
                    wanted[(address, int(port["port"]), protocol)] = port
                if len(addresses) > 1 and port.get("nodePort"):
                    # The node port on the balancer's address: no privileges needed
                    wanted[(addresses[1], int(port["nodePort"]), protocol)] = port
        elif current.lb_ip is not None:
            self._ipam.release_service_ip(current.lb_ip)
            current.lb_ip = None
        for bind in list(current.listeners):
            if bind not in wanted:
                current.listeners.pop(bind).close()
        current.failed &= set(wanted)
        for bind in wanted:
            if bind in current.listeners or bind in current.failed:
                continue
            try:
                current.listeners[bind] = await self._listen(key, bind)
            except OSError as exc:
                current.failed.add(bind)
                assert service is not None
                self._events.emit(
                    service,
                    "Warning",
                    "FailedToBind",
                    f"cannot listen on {bind[0]}:{bind[1]}/{bind[2]}: {exc.strerror or exc}"
                    + (" (ports below 1024 need privileges)" if bind[1] < 1024 else ""),
                    component="kube-proxy",
                )
        if service is None:
            self._services.pop(key, None)

    async def _lb_address(self, key: Key, current: _ServicePorts, service: Obj) -> str:
        if current.lb_ip is None:
            ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress")
            recorded = (ingress or [{}])[0].get("ip")
            if recorded and self._ipam.reserve_service_ip(recorded):
                current.lb_ip = str(recorded)
            else:
                current.lb_ip = self._ipam.allocate_service_ip()
        ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if not ingress or ingress[0].get("ip") != current.lb_ip:
            service.setdefault("status", {})["loadBalancer"] = {
                "ingress": [{"ip": current.lb_ip, "ipMode": "VIP"}]
            }
            with contextlib.suppress(ApiError):
                await self._cluster.update("services", service, subresource="status")
        return current.lb_ip

    # ------------------------------------------------------------ listeners

    async def _listen(self, key: Key, bind: Bind) -> _Listener:
        address, port, protocol = bind
        if protocol == "UDP":
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpFront(self, key, port), local_addr=(address, port)
            )
            return _Listener(bind, udp=transport)

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._connections.add(writer)
            try:
                await self._relay(key, port, reader, writer)
            finally:
                self._connections.discard(writer)

        server = await asyncio.start_server(accept, address, port, reuse_address=True)
        return _Listener(bind, server=server)

    def pick(self, key: Key, port: int, protocol: str, client: str) -> list[tuple[str, int]]:
        """Backends for one connection, the chosen one first."""
        service = self._cluster.store.get("services", key[0], key[1])
        if service is None:
            return []
        spec = service.get("spec") or {}
        port_spec = next(
            (
                p
                for p in spec.get("ports") or []
                if port in (int(p["port"]), int(p.get("nodePort") or 0))
                and p.get("protocol", "TCP") == protocol
            ),
            None,
        )
        if port_spec is None:
            return []
        backends = backends_for(self._cluster.store, service, port_spec)
        if not backends:
            return []
        if spec.get("sessionAffinity") == "ClientIP":
            start = sum(client.encode()) % len(backends)
        else:
            counter = (key, protocol, port)
            start = self._round_robin.get(counter, 0) % len(backends)
            self._round_robin[counter] = start + 1
        return backends[start:] + backends[:start]

    async def _relay(
        self, key: Key, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername") or ("", 0)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for address, target in self.pick(key, port, "TCP", str(peer[0])):
            try:
                upstream = await asyncio.wait_for(
                    asyncio.open_connection(address, target), _CONNECT_TIMEOUT
                )
                break
            except (OSError, TimeoutError):
                continue
        if upstream is None:  # no ready endpoint: refuse, as kube-proxy's REJECT rule does
            writer.transport.abort()
            return
        back_reader, back_writer = upstream
        self._connections.add(back_writer)
        try:
            await asyncio.gather(_copy(reader, back_writer), _copy(back_reader, writer))
        finally:
            self._connections.discard(back_writer)
            back_writer.close()
            writer.close()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, ConnectionError):
        writer.close()


class _UdpBack(asyncio.DatagramProtocol):
    """One client's flow to one backend; replies go back through the front socket."""

    def __init__(self, front: _UdpFront, client: tuple[str, int]) -> None:
        self.front = front
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.touch()

    def touch(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(_UDP_IDLE, self.close)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.touch()
        if self.front.transport is not None:
            self.front.transport.sendto(data, self.client)

    def error_received(self, exc: Exception) -> None:
        self.close()

    def close(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        if self.transport is not None:
            self.transport.close()
        self.front.flows.pop(self.client, None)


class _UdpFront(asyncio.DatagramProtocol):
    def __init__(self, proxy: ServiceProxy, key: Key, port: int) -> None:
        self.proxy = proxy
        self.key = key
        self.port = port
        self.transport: asyncio.DatagramTransport | None = None
        self.flows: dict[tuple[str, int], _UdpBack] = {}
        self._opening: dict[tuple[str, int], list[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        for flow in list(self.flows.values()):
            flow.close()
        for task in self._tasks:
            task.cancel()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        flow = self.flows.get(addr)
        if flow is not None and flow.transport is not None:
            flow.touch()
            flow.transport.sendto(data)
        elif addr in self._opening:
            self._opening[addr].append(data)
        else:
            self._opening[addr] = [data]
            task = asyncio.create_task(self._open(addr))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _open(self, client: tuple[str, int]) -> None:
        try:
            backends = self.proxy.pick(self.key, self.port, "UDP", client[0])
            if not backends:
                return
            loop = asyncio.get_running_loop()
            _, back = await loop.create_datagram_endpoint(
                lambda: _UdpBack(self, client), remote_addr=backends[0]
            )
            self.flows[client] = back
            for data in self._opening.get(client, []):
                if back.transport is not None:
                    back.transport.sendto(data)
        except OSError as exc:
            log.debug("udp flow for %s not opened: %s", client, exc)
        finally:
            self._opening.pop(client, None)
