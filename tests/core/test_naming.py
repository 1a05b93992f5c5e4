"""Intercept naming follows DESIGN.md.

Covers: no --workload -> workload = argument, name = <workload>-<namespace>;
with --workload the name is kept; invalid names are refused with advice;
over-long derived names are shortened to a stable, distinct DNS label.
"""

from __future__ import annotations

import pytest

from core.naming import derive_name, intercept_name, is_dns_label


def test_derived_name() -> None:
    n = intercept_name("hello", "myns")
    assert (n.name, n.workload) == ("hello-myns", "hello")


def test_explicit_workload_keeps_name() -> None:
    n = intercept_name("myhello", "myns", workload="hello")
    assert (n.name, n.workload) == ("myhello", "hello")


def test_invalid_names_refused() -> None:
    with pytest.raises(ValueError, match="--workload"):
        intercept_name("Hello_World", "ns")
    with pytest.raises(ValueError, match="DNS label"):
        intercept_name("My Name", "ns", workload="hello")


def test_long_names_shortened_stably() -> None:
    a = derive_name("w" * 40, "n" * 40)
    b = derive_name("w" * 40, "n" * 41)
    assert len(a) <= 63 and is_dns_label(a)
    assert a == derive_name("w" * 40, "n" * 40)
    assert a != b
