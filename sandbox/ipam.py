"""Loopback address blocks for pods and Services.

Every sandbox on a machine (tests run several at once) claims its own
``127.N.0.0/16`` block, held by an exclusive ``flock`` on a lock file for as
long as the sandbox lives; the kernel drops the lock when the process dies, so
a crashed sandbox never strands its block. Inside the block:

- pod IPs come from ``127.N.0.0/17`` (``127.N.0.2`` … ``127.N.127.254``);
- Service ClusterIPs (and LoadBalancer ingress IPs) from ``127.N.128.0/17``.

Linux routes all of ``127.0.0.0/8`` to the loopback interface, so every address
here can be bound by an unprivileged process with no set-up.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["AddressPool", "Ipam", "IpamError", "claim_block"]

_FIRST_BLOCK = 1
_LAST_BLOCK = 254


class IpamError(RuntimeError):
    """No address left, or no free block on this machine."""

    title = "Out of sandbox addresses"


def _lock_dir() -> Path:
    path = Path(os.environ.get("WAYLAY_IPAM_DIR", Path(tempfile.gettempdir()) / "waylay-ipam"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class _Claim:
    block: int
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the flock
            self.fd = -1


def claim_block(preferred: int | None = None, *, lock_dir: Path | None = None) -> _Claim:
    """Claim a free ``127.N.0.0/16`` block, trying ``preferred`` first."""
    directory = lock_dir or _lock_dir()
    order: list[int] = list(range(_FIRST_BLOCK, _LAST_BLOCK + 1))
    if preferred is not None:
        if not _FIRST_BLOCK <= preferred <= _LAST_BLOCK:
            raise IpamError(f"block {preferred} is outside {_FIRST_BLOCK}..{_LAST_BLOCK}")
        order.remove(preferred)
        order.insert(0, preferred)
    for block in order:
        fd = os.open(directory / f"block-{block}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return _Claim(block, fd)
    raise IpamError(
        f"every 127.N.0.0/16 block ({_FIRST_BLOCK}..{_LAST_BLOCK}) is held by another "
        f"sandbox; stop some of them (locks in {directory})"
    )


@dataclass
class AddressPool:
    """Addresses handed out round-robin from one range, so a freed address is not
    reused at once (a stale client still dialling it would reach the wrong pod)."""

    first: int
    last: int
    used: set[int] = field(default_factory=set)
    _next: int = 0

    def __post_init__(self) -> None:
        self._next = self.first

    def allocate(self) -> str:
        size = self.last - self.first + 1
        for step in range(size):
            candidate = self.first + (self._next - self.first + step) % size
            if candidate not in self.used:
                self.used.add(candidate)
                self._next = candidate + 1 if candidate < self.last else self.first
                return str(ipaddress.IPv4Address(candidate))
        raise IpamError(
            f"all {size} addresses from {ipaddress.IPv4Address(self.first)} to "
            f"{ipaddress.IPv4Address(self.last)} are in use"
        )

    def reserve(self, address: str) -> bool:
        """Mark ``address`` used; ``False`` when it is outside the pool or taken."""
        value = int(ipaddress.IPv4Address(address))
        if not self.first <= value <= self.last or value in self.used:
            return False
        self.used.add(value)
        return True

    def contains(self, address: str) -> bool:
        try:
            value = int(ipaddress.IPv4Address(address))
        except ValueError:
            return False
        return self.first <= value <= self.last

    def release(self, address: str) -> None:
        try:
            self.used.discard(int(ipaddress.IPv4Address(address)))
        except ValueError:
            pass


class Ipam:
    """One sandbox's pod and Service address pools.

    ``Ipam.claim()`` takes a free block; pass ``preferred`` (say, the block a
    restarted sandbox used before) to get the same addresses back when free.
    Call ``close()`` (or use it as a context manager) to give the block back.
    """

    def __init__(self, block: int, *, claim: _Claim | None = None) -> None:
        self.block = block
        self._claim = claim
        base = int(ipaddress.IPv4Address(f"127.{block}.0.0"))
        self.pods = AddressPool(base + 2, base + 0x7FFE)
        self.services = AddressPool(base + 0x8001, base + 0xFFFE)

    @classmethod
    def claim(cls, preferred: int | None = None, *, lock_dir: Path | None = None) -> Ipam:
        held = claim_block(preferred, lock_dir=lock_dir)
        return cls(held.block, claim=held)

    @property
    def pod_cidr(self) -> str:
        return f"127.{self.block}.0.0/17"

    @property
    def service_cidr(self) -> str:
        return f"127.{self.block}.128.0/17"

    def allocate_pod_ip(self) -> str:
        return self.pods.allocate()

    def release_pod_ip(self, address: str) -> None:
        self.pods.release(address)

    def allocate_service_ip(self) -> str:
        return self.services.allocate()

    def reserve_service_ip(self, address: str) -> bool:
        return self.services.reserve(address)

    def release_service_ip(self, address: str) -> None:
        self.services.release(address)

    def restore(self, pod_ips: Iterable[str], service_ips: Iterable[str]) -> None:
        """Mark addresses already recorded in objects (after a restart) as used."""
        for address in pod_ips:
            if self.pods.contains(address):
                self.pods.reserve(address)
        for address in service_ips:
            if self.services.contains(address):
                self.services.reserve(address)

    def close(self) -> None:
        if self._claim is not None:
            self._claim.release()
            self._claim = None

    def __enter__(self) -> Ipam:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
