"""The `:` commands, parsed into what they ask for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CommandKind = Literal["ns", "ctx", "kind", "quit", "help"]
KINDS = {
    "deploy": "Deployment",
    "deployment": "Deployment",
    "deployments": "Deployment",
    "dp": "Deployment",
    "rs": "ReplicaSet",
    "replicaset": "ReplicaSet",
    "replicasets": "ReplicaSet",
    "sts": "StatefulSet",
    "statefulset": "StatefulSet",
    "statefulsets": "StatefulSet",
    "all": "all",
    "workloads": "all",
}


class BadCommand(ValueError):
    """The text is not a command; the message lists what is."""


@dataclass(frozen=True)
class Command:
    kind: CommandKind
    arg: str = ""


def parse_command(text: str) -> Command:
    words = text.strip().lstrip(":").split()
    if not words:
        raise BadCommand("type a command: ns NAME, ctx NAME, deploy, rs, sts, all, q")
    head, rest = words[0].lower(), " ".join(words[1:])
    if head in ("ns", "namespace", "namespaces"):
        return Command("ns", rest)
    if head in ("ctx", "context", "contexts"):
        return Command("ctx", rest)
    if head in KINDS:
        return Command("kind", KINDS[head])
    if head in ("q", "quit", "q!"):
        return Command("quit")
    if head in ("help", "?"):
        return Command("help")
    raise BadCommand(f"unknown command {head!r}: try ns NAME, ctx NAME, deploy, rs, sts, all, q")
