"""The Python side of the engine: functions `ferroflow._core` calls back.

The engine decides states; these turn them into Prefect's `State` objects and log
lines. They are off the hot path: the engine asks `finished_lines_enabled()` once per
batch and skips per-run INFO lines when nobody would see them, and the runs of a `.map`
are summed up in one line instead of one line each.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from typing import Any

from ferroflow import states
from ferroflow.exceptions import CancelledRun
from ferroflow.logging import flow_run_logger, get_logger, task_run_logger

_task_runs = logging.getLogger("ferroflow.task_runs")

_TYPES = {
    "Pending": states.StateType.PENDING,
    "Running": states.StateType.RUNNING,
    "Retrying": states.StateType.RUNNING,
    "AwaitingRetry": states.StateType.SCHEDULED,
    "Completed": states.StateType.COMPLETED,
    "Cached": states.StateType.COMPLETED,
    "Failed": states.StateType.FAILED,
    "TimedOut": states.StateType.FAILED,
    "Crashed": states.StateType.CRASHED,
    "Cancelled": states.StateType.CANCELLED,
}


def make_state(name: str, value: Any, finished_at: float | None, task_run_id: Any) -> states.State:
    """The `State` of a run: `value` is its result, its exception, or (NotReady) the id
    of the upstream run that stopped it."""
    details = states.StateDetails(task_run_id=task_run_id)
    timestamp = None if finished_at is None else datetime.fromtimestamp(finished_at, tz=timezone.utc)
    if name == "NotReady":
        return states.NotReady(value, state_details=details, timestamp=timestamp)
    if name in ("Failed", "TimedOut") and isinstance(value, BaseException):
        state = states.exception_to_failed_state(value, state_details=details, timestamp=timestamp)
        state.name = name
        return state
    if name == "Crashed":
        if isinstance(value, BaseException):
            state = states.exception_to_crashed_state(value)
        else:
            state = states.Crashed(message="Execution was interrupted by an unexpected failure of its worker.")
        state.state_details, state.timestamp = details, timestamp or state.timestamp
        return state
    if name == "Cancelled":
        message = "The run was cancelled before it started."
        return states.Cancelled(message=message, data=CancelledRun(message), state_details=details, timestamp=timestamp)
    return states.State(_TYPES[name], name=name, data=value, state_details=details, timestamp=timestamp)


def _task_logger(context: Any, task: Any, run_name: str) -> logging.LoggerAdapter:
    if context is None:
        return task_run_logger(run_name, task_name=task.name)
    flow_run = context.flow_run
    return task_run_logger(run_name, task_name=task.name, flow_run_name=flow_run.name, flow_name=context.flow.name, flow_run_id=flow_run.id)


def task_finished(context: Any, task: Any, run_name: str, state_name: str, value: Any, upstream_id: Any) -> None:
    """Prefect's `Finished in state ...` line: INFO when completed, ERROR otherwise."""
    completed = state_name in ("Completed", "Cached")
    level = logging.INFO if completed else logging.ERROR
    if not _task_runs.isEnabledFor(level):
        return
    state = make_state(state_name, upstream_id if state_name == "NotReady" else value, None, None)
    _task_logger(context, task, run_name).log(level, f"Finished in state {state}")


def task_failed(context: Any, task: Any, run_name: str, exception: BaseException, attempt: int, retries: int, delay: float | None) -> None:
    """The line of a failed attempt: a retry to come, retries exhausted, or a crash."""
    logger = _task_logger(context, task, run_name)
    if not isinstance(exception, Exception):
        crashed = states.exception_to_crashed_state(exception)
        logger.error(f"Crash detected! {crashed.message}")
        return
    prefix = f"Task run failed with exception: {exception!r}"
    if delay is not None:
        when = "immediately" if delay == 0 else f"{delay:g} second(s) from now"
        logger.info(f"{prefix} - Retry {attempt + 1}/{retries} will start {when}")
    elif retries:
        logger.error(f"{prefix} - Retries are exhausted", exc_info=exception)
    else:
        logger.error(prefix, exc_info=exception)


def map_finished(context: Any, task: Any, counts: list[tuple[str, int]], elapsed: float) -> None:
    """One line for a whole `.map`, instead of one per run."""
    total = sum(count for _, count in counts)
    summary = ", ".join(f"{count} {name}" for name, count in counts) or "no runs"
    completed = all(name in ("Completed", "Cached") for name, _ in counts)
    message = f"Mapped task {task.name!r}: {total} runs finished in {elapsed:.3f}s: {summary}"
    logger = get_logger("task_runs") if context is None else flow_run_logger(context.flow_run.name, context.flow.name, context.flow_run.id)
    logger.log(logging.INFO if completed else logging.ERROR, message)


def run_name(task: Any, name_fn: Any, args: tuple, kwargs: dict | None) -> str:
    """A custom `task_run_name`: a template formatted with the call's parameters, or a
    callable taking no arguments or `parameters=`."""
    parameters = task.bind_parameters(args, kwargs or {})
    if isinstance(name_fn, str):
        return name_fn.format(**parameters)
    if _takes_parameters(name_fn):
        name = name_fn(parameters=parameters)
    else:
        name = name_fn()
    if not isinstance(name, str):
        raise TypeError(f"Callable {name_fn!r} for 'task_run_name' returned type {type(name).__name__} but a string is required.")
    return name


def _takes_parameters(fn: Any) -> bool:
    code = getattr(fn, "__code__", None)
    return code is not None and "parameters" in code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]


def returned_state(state: states.State) -> tuple[bool, Any]:
    """A task that returns a State ends in it: (completed, its result or exception)."""
    if state.is_completed():
        return True, state.data
    return False, states.get_state_exception(state)


def finished_lines_enabled() -> bool:
    return _task_runs.isEnabledFor(logging.INFO)


_warned_blocking = False


def warn_if_blocking_loop() -> None:
    """Once per process: `.result()`/`.wait()` on a running event loop blocks that loop
    (allowed, as in Prefect, and safe: coroutine runs have their own loop). asyncio is
    looked up, not imported: sync code never pays for it."""
    global _warned_blocking
    asyncio = sys.modules.get("asyncio")
    if _warned_blocking or asyncio is None or asyncio._get_running_loop() is None:
        return
    _warned_blocking = True
    get_logger().warning(
        "A future's .result() or .wait() was called inside a running event loop: it blocks the loop until the run finishes. "
        "In async code, `await` the future instead."
    )
