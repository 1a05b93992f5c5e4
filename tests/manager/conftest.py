"""The sandbox fixtures (one real sandbox per test session), for the end-to-end tests."""

from tests.sandbox.conftest import namespace, sandbox

__all__ = ["namespace", "sandbox"]
