"""The sandbox's image registry: image names mapped to local programs.

A pod's ``image`` is looked up here with its registry host, tag and digest
ignored (``docker.io/waylay/agent:1.2`` is ``waylay/agent``). The program is the
image's ENTRYPOINT; a container's ``command`` replaces it and ``args`` are
appended, as on a real node. Programs run with the interpreter of the sandbox
itself (the project's venv), so ``python`` in a ``command`` means that
interpreter too.

An image not in ``IMAGES`` cannot be pulled: the kubelet reports
``ErrImagePull`` / ``ImagePullBackOff``.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass

__all__ = ["IMAGES", "Image", "image_name", "resolve"]


@dataclass(frozen=True)
class Image:
    """A local program standing in for a container image."""

    entrypoint: tuple[str, ...]
    """The ENTRYPOINT; ``python`` is the sandbox's own interpreter."""
    description: str

    def digest(self, name: str) -> str:
        """A stable ``sha256:…`` for ``imageID`` (the name and entrypoint, hashed)."""
        material = "\0".join((name, *self.entrypoint)).encode()
        return "sha256:" + hashlib.sha256(material).hexdigest()


def _module(module: str, description: str) -> Image:
    return Image(("python", "-m", module), description)


IMAGES: dict[str, Image] = {
    "waylay/agent": _module("agent", "the waylay traffic agent (sidecar)"),
    "waylay/manager": _module("webhook", "the waylay traffic manager and injector webhook"),
    "waylay/demo-http-echo": _module(
        "sandbox.images.http_echo", "HTTP echo: names its pod and echoes the request"
    ),
    "waylay/demo-tcp-echo": _module("sandbox.images.tcp_echo", "TCP echo"),
    "waylay/demo-udp-echo": _module("sandbox.images.udp_echo", "UDP echo"),
    "waylay/demo-ingress": _module(
        "sandbox.images.ingress", "an ingress controller routing by Host and path"
    ),
    "waylay/demo-traffic": _module(
        "sandbox.images.traffic", "a light traffic generator through the ingress"
    ),
    "waylay/toolbox": Image(("sh",), "a shell, for commands given in the pod spec"),
}
"""Image name (no registry, tag or digest) -> program."""


def image_name(image: str) -> str:
    """``registry/waylay/agent:1.0@sha256:…`` -> ``waylay/agent``."""
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        name = name[:colon]
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    if len(parts) == 2 and parts[0] == "library":
        parts = parts[1:]
    return "/".join(parts)


def resolve(image: str) -> Image | None:
    """The program for ``image``, or ``None`` when the sandbox has no such image."""
    return IMAGES.get(image_name(image))


def python_argv(argv: list[str]) -> list[str]:
    """Replace a leading ``python``/``python3`` with the sandbox's interpreter."""
    if argv and argv[0] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    return argv
