"""Formatting user objects for messages and log lines, never failing: an exception whose
`__str__` or `__repr__` raises must still reach the user as itself, not be replaced by
the error of formatting it (issue 7, item 15)."""

from __future__ import annotations

from typing import Any

__all__ = ["safe_repr", "safe_str"]


def safe_repr(obj: Any) -> str:
    """`repr(obj)`, or its class name when its `__repr__` raises."""
    try:
        return repr(obj)
    except Exception:
        return type(obj).__name__


def safe_str(obj: Any) -> str | None:
    """`str(obj)`, or None when its `__str__` raises."""
    try:
        return str(obj)
    except Exception:
        return None
