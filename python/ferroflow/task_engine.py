"""`prefect.task_engine`'s public name: the error of a task run that exceeded its timeout.

ferroflow's engine is elsewhere (`ferroflow._core`); this module holds what user code
catches or checks, at Prefect's path, and the state a timed-out attempt ends in.
"""

from __future__ import annotations

from typing import Any

from ferroflow import states
from ferroflow.utilities.text import safe_repr

__all__ = ["TaskRunTimeoutError"]


class TaskRunTimeoutError(TimeoutError):
    """Raised when a task run exceeds its `timeout_seconds` (one attempt's limit)."""

    #: The limit that was exceeded, in seconds; None when raised by user code.
    timeout_seconds: float | None = None


def timed_out_state(error: TimeoutError, **fields: Any) -> states.State[Any]:
    """Prefect's state for a task attempt that ended with a `TimeoutError`: Failed, named
    `TimedOut`, holding the error. Its message says the limit when the run exceeded its
    `timeout_seconds`, otherwise which timeout the task's code raised (Prefect's
    `handle_timeout`)."""
    if isinstance(error, TaskRunTimeoutError) and error.timeout_seconds is not None:
        message = f"Task run exceeded timeout of {error.timeout_seconds} second(s)"
    else:
        message = f"Task run failed due to timeout: {safe_repr(error)}"
    return states.Failed(name="TimedOut", message=message, data=error, **fields)
