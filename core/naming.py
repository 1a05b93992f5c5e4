"""Intercept naming, as DESIGN.md sets it out.

- ``waylay intercept hello -n myns`` (no ``--workload``) intercepts workload
  ``hello`` and names the intercept ``hello-myns``;
- ``waylay intercept myhello --workload hello -n myns`` keeps ``myhello``;
- names are DNS labels (at most 63 characters): a derived name that would be
  longer is shortened and given a stable hash suffix so it stays unique.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = ["InterceptName", "derive_name", "intercept_name", "is_dns_label"]

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def is_dns_label(value: str) -> bool:
    return bool(_LABEL.fullmatch(value))


@dataclass(frozen=True)
class InterceptName:
    name: str
    """The intercept's name (what ``leave`` takes)."""
    workload: str
    """The workload it intercepts."""


def derive_name(workload: str, namespace: str) -> str:
    """``<workload>-<namespace>``, shortened with a hash suffix past 63 characters."""
    full = f"{workload}-{namespace}"
    if len(full) <= 63:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[:54].rstrip('-')}-{digest}"


def intercept_name(arg: str, namespace: str, workload: str | None = None) -> InterceptName:
    """Apply the naming rules to the positional argument of ``waylay intercept``.

    Raises ValueError (with what to type instead) for names that are not DNS labels.
    """
    if workload:
        if not is_dns_label(arg):
            raise ValueError(
                f"intercept name {arg!r} is not a DNS label: use lowercase letters, "
                "digits and '-', at most 63 characters"
            )
        return InterceptName(arg, workload)
    if not is_dns_label(arg):
        raise ValueError(
            f"{arg!r} is not a workload name; to give the intercept another name, "
            "pass the workload with --workload"
        )
    return InterceptName(derive_name(arg, namespace), arg)
