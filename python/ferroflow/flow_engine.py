"""`prefect.flow_engine`'s public name: the error of a flow run that exceeded its timeout."""

from __future__ import annotations

__all__ = ["FlowRunTimeoutError"]


class FlowRunTimeoutError(TimeoutError):
    """Raised when a flow run exceeds its `timeout_seconds`."""
