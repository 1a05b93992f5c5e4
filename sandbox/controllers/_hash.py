"""Template hashes named the way the real controllers name them.

``controller.ComputeHash`` in Kubernetes hashes a pod template with FNV-1a
(32 bit), mixes in the optional collision count, and spells the decimal number
with ``rand.SafeEncodeString`` (an alphabet without vowels or look-alike
digits). The result is the ``pod-template-hash`` label and the suffix of a
Deployment's ReplicaSet names (``hello-7d4b9c8f5``), and the suffix of a
StatefulSet's revision (``web-6c5b8f9d4``). The bytes hashed here are canonical
JSON rather than Go's struct dump, so values differ from a real cluster's, but
they are stable, short and look the same.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

__all__ = ["canonical", "compute_hash", "fnv1a_32", "safe_encode"]

_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv1a_32(data: bytes) -> int:
    h = _FNV_OFFSET
    for byte in data:
        h ^= byte
        h = (h * _FNV_PRIME) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    """``rand.SafeEncodeString``: map each byte onto a vowel-free alphabet."""
    return "".join(_ALPHANUMS[b % len(_ALPHANUMS)] for b in text.encode())


def canonical(value: Any) -> Any:
    """``value`` without nulls, empty maps and empty lists, at any depth.

    Go decodes all three into the same zero value, so for the real controllers
    (``apiequality.Semantic.DeepEqual``, ``DeepHashObject``) a template sent by
    ``kubectl rollout undo`` with ``creationTimestamp: null`` is the same
    template as one without it.
    """
    if isinstance(value, Mapping):
        out = {k: canonical(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def compute_hash(template: Mapping[str, Any], collision_count: int | None = None) -> str:
    """The hash of a pod template, as ``controller.ComputeHash`` names it."""
    data = json.dumps(canonical(template), sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        data += struct.pack("<I", collision_count & 0xFFFFFFFF)
    return safe_encode(str(fnv1a_32(data)))
