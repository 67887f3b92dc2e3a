"""The Python side of the engine: functions `ferroflow._core` calls back.

The engine decides states; these turn them into Prefect's `State` objects and log
lines, and call the user's code that a run's states call for (state hooks,
`retry_condition_fn`, the jitter of a retry delay). They are off the hot path: the engine
asks `finished_lines_enabled()` once per batch and skips per-run INFO lines when nobody
would see them, the runs of a `.map` are summed up in one line instead of one line each,
and a task without hooks, retry condition or jitter never gets here for them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, cast

from ferroflow import states
from ferroflow._state_hooks import Hook, call_hooks, is_awaitable, run_to_completion
from ferroflow.context import TaskRunContext
from ferroflow.exceptions import CancelledRun, FailedRun, TaskRunNameError
from ferroflow.logging import flow_run_logger, get_logger, get_run_logger, task_run_logger
from ferroflow.utilities.text import safe_repr

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


def make_state(name: str, value: Any, finished_at: float | None, task_run_id: Any) -> states.State[Any]:
    """The `State` of a run: `value` is its result, its exception, or (NotReady) the id
    of the upstream run that stopped it.

    A run whose function returned a State (Completed or Failed) has that State as its
    value: the run's state is a copy of it (type, name, message, data; a state of another
    run is aggregated first, as Prefect's `return_value_to_state` does), with this run's
    id and end time."""
    details = states.StateDetails(task_run_id=task_run_id)
    timestamp = None if finished_at is None else datetime.fromtimestamp(finished_at, tz=timezone.utc)
    if isinstance(value, states.State) and name in ("Completed", "Failed"):
        # A State the user's function returned, its result of any type: isinstance leaves
        # that type Unknown to pyright (mypy has Any, so casting to State[Any] is redundant).
        return _returned_state_copy(cast("states.State[object]", value), task_run_id, timestamp)
    if name == "NotReady":
        return states.NotReady(value, state_details=details, timestamp=timestamp)
    if name == "TimedOut" and isinstance(value, TimeoutError):
        from ferroflow.task_engine import timed_out_state

        return timed_out_state(value, state_details=details, timestamp=timestamp)
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


def _returned_state_copy(
    value: states.State[object], task_run_id: Any, timestamp: datetime | None
) -> states.State[Any]:
    final = states.return_value_to_state(value)  # a hand-made state is itself; a run's is aggregated
    copy = final.model_copy()  # the user's object is left as it is
    copy.state_details.task_run_id = task_run_id
    if timestamp is not None:
        copy.timestamp = timestamp
    return copy


def _task_logger(context: Any, task: Any, run_name: str) -> logging.LoggerAdapter[logging.Logger]:
    if context is None:
        return task_run_logger(run_name, task_name=task.name)
    flow_run = context.flow_run
    return task_run_logger(
        run_name, task_name=task.name, flow_run_name=flow_run.name, flow_name=context.flow.name, flow_run_id=flow_run.id
    )


def task_finished(context: Any, task: Any, run_name: str, state_name: str, value: Any, upstream_id: Any) -> None:
    """Prefect's `Finished in state ...` line: INFO when completed, ERROR otherwise."""
    completed = state_name in ("Completed", "Cached")
    level = logging.INFO if completed else logging.ERROR
    if not _task_runs.isEnabledFor(level):
        return
    state = make_state(state_name, upstream_id if state_name == "NotReady" else value, None, None)
    _task_logger(context, task, run_name).log(level, f"Finished in state {state}")


def task_failed(
    context: Any,
    task: Any,
    run_name: str,
    exception: BaseException | states.State[Any],
    attempt: int,
    retries: int,
    delay: float | None,
    exhausted: bool,
    timed_out: bool,
) -> None:
    """The line of a failed attempt: a retry to come, retries exhausted, a failure not
    retried (no retries, or `retry_condition_fn` declined one), or a crash. The engine
    says whether the retries are `exhausted`, and whether the run ends `TimedOut`, which
    gets Prefect's second line saying so.

    `exception` may be the failed State the task returned (Prefect words that line
    "Task run failed with state: ..."). Exceptions whose `__repr__` raises are shown by
    their class name."""
    logger = _task_logger(context, task, run_name)
    if isinstance(exception, states.State):
        failure: BaseException | None = None
        prefix = f"Task run failed with state: {exception!r}"
    elif not isinstance(exception, Exception):
        crashed = states.exception_to_crashed_state(exception)
        logger.error(f"Crash detected! {crashed.message}")
        return
    else:
        failure = exception
        prefix = f"Task run failed with exception: {safe_repr(exception)}"
    if delay is not None:
        when = "immediately" if delay == 0 else f"{delay:g} second(s) from now"
        logger.info(f"{prefix} - Retry {attempt + 1}/{retries} will start {when}")
    elif exhausted:
        logger.error(f"{prefix} - Retries are exhausted", exc_info=failure)
    else:
        logger.error(prefix, exc_info=failure)
    if timed_out and isinstance(failure, TimeoutError):
        from ferroflow.task_engine import timed_out_state

        logger.error(timed_out_state(failure).message)


def map_finished(context: Any, task: Any, counts: list[tuple[str, int]], elapsed: float) -> None:
    """One line for a whole `.map`, instead of one per run."""
    total = sum(count for _, count in counts)
    summary = ", ".join(f"{count} {name}" for name, count in counts) or "no runs"
    completed = all(name in ("Completed", "Cached") for name, _ in counts)
    message = f"Mapped task {task.name!r}: {total} runs finished in {elapsed:.3f}s: {summary}"
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger]
    if context is None:
        logger = get_logger("task_runs")
    else:
        logger = flow_run_logger(context.flow_run.name, context.flow.name, context.flow_run.id)
    logger.log(logging.INFO if completed else logging.ERROR, message)


def run_name(task: Any, name_fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> str:
    """A custom `task_run_name`: a template formatted with the call's parameters, or a
    callable taking no arguments or `parameters=`.

    Raises what the run must fail with, naming the task: `TaskRunNameError` (a
    ValueError; `__cause__` is the original error) when the template cannot be formatted
    or the callable raises, `TypeError` when the callable returns a non-string."""
    parameters = task.bind_parameters(args, kwargs or {})
    if isinstance(name_fn, str):
        try:
            return name_fn.format(**parameters)
        except Exception as exc:
            raise TaskRunNameError(
                f"Task {task.name!r}: task_run_name {name_fn!r} could not be formatted: {states.format_exception(exc)}"
            ) from exc
    try:
        name = name_fn(parameters=parameters) if _takes_parameters(name_fn) else name_fn()
    except Exception as exc:
        raise TaskRunNameError(
            f"Task {task.name!r}: task_run_name callable {_callable_name(name_fn)} raised "
            f"{states.format_exception(exc)}"
        ) from exc
    if not isinstance(name, str):
        raise TypeError(
            f"Task {task.name!r}: callable {_callable_name(name_fn)} for 'task_run_name' returned type "
            f"{type(name).__name__} but a string is required."
        )
    return name


def _callable_name(fn: Any) -> str:
    return repr(getattr(fn, "__qualname__", None) or type(fn).__name__)


def _takes_parameters(fn: Any) -> bool:
    code = getattr(fn, "__code__", None)
    return code is not None and "parameters" in code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]


def returned_state(state: states.State[Any]) -> tuple[bool, Any]:
    """A task that returns a State ends in it: (completed, its result or exception).

    A hand-made state is used as it is; the state of another run is aggregated first
    (Prefect's `return_value_to_state`: a completed run's state completes, any other
    fails). Completed: `(True, data)`; otherwise `(False, exception)`, the exception the
    state stands for (its data if an exception, else `FailedRun(message)`, ...)."""
    final = states.return_value_to_state(state)
    if final.is_completed():
        return True, final.data
    if final.type in (states.StateType.FAILED, states.StateType.CRASHED, states.StateType.CANCELLED):
        return False, states.get_state_exception(final)
    # A non-final state (Pending, Running, Paused, ...) returned by hand: no result to have.
    message = f"Task run returned a non-final state {final}; it has no result."
    return False, FailedRun(message)


def is_cache_hit(state: states.State[Any]) -> bool:
    """Whether a completed State a task's function returned is a cache hit: one made by
    hand (of no run) named `Cached`, as the cache around a task's function returns for a
    hit. The run then ends Cached with the State's data as its value (a direct call
    returns that value), where another returned State is the run's value itself."""
    details = state.state_details
    return state.name == "Cached" and details.task_run_id is None and details.flow_run_id is None


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
        "A future's .result() or .wait() was called inside a running event loop: "
        "it blocks the loop until the run finishes. "
        "In async code, `await` the future instead."
    )


# -- state hooks, retry condition, jitter (tasks that have them) -------------------------


def task_state_hooks(hooks: list[Hook], state_name: str, value: Any) -> None:
    """Calls a task's hooks for the state its current run enters (`state_name`; `value`
    is its result, or what failed it), as Prefect does: `hook(task, task_run, state)`, in
    order, each logged before and after; one that raises is logged with its traceback
    and changes nothing. The engine calls this in the run's thread and context, while
    the run is its current one, before the run's `Finished in state` line and before its
    future completes."""
    context = TaskRunContext.get()
    if context is None:  # the engine calls this only inside a run
        raise RuntimeError(f"task state hooks for {state_name!r} called outside a task run")
    task_run = context.task_run
    state = make_state(state_name, value, None, task_run.id)
    call_hooks(hooks, context.task, task_run, state, get_run_logger(context))


def retry_allowed(condition: Callable[..., Any], failure: Any) -> bool:
    """Whether the task's `retry_condition_fn` lets a failed attempt of the current run be
    retried: `condition(task, task_run, state)`, where `state` is Prefect's Failed state
    holding the exception (or the failed State the task returned). An async condition is
    run to its end. One that raises declines, logged as Prefect logs it.

    Unlike Prefect, any callable is called (Prefect treats a callable object or a
    `functools.partial` as declining, since it checks for a plain function)."""
    context = TaskRunContext.get()
    if context is None:  # the engine calls this only inside a run
        raise RuntimeError("retry_condition_fn asked outside a task run")
    kind = "exception" if isinstance(failure, BaseException) else "state"
    state = states.Failed(data=failure, message=f"Task run encountered unexpected {kind}: {safe_repr(failure)}")
    try:
        allowed = condition(context.task, context.task_run, state)
        if is_awaitable(allowed):
            allowed = run_to_completion(allowed)
        return bool(allowed)
    except Exception:
        get_run_logger(context).error(
            f"An error was encountered while running `retry_condition_fn` check '{condition!r}' "
            f"for task {context.task.name!r}",
            exc_info=True,
        )
        return False


def jittered_delay(delay: float, factor: float) -> float:
    """A retry delay with `retry_jitter_factor` applied: Prefect's clamped Poisson
    interval, drawn with Python's `random` (so `random.seed` makes it repeat).

    An exponential variate of mean `delay`, clamped to at most `delay * (1 + factor)`
    and at least a lower bound chosen so that as much probability lies between it and
    the median as between the median and the upper bound: the mean stays about `delay`.
    The engine calls it only for delays and factors above 0."""
    import math
    import random

    upper_multiple = 1 + factor
    # The lower clamp multiple (0 for large factors, where 2**k would overflow).
    lower_multiple = 0.0
    if upper_multiple < 50:
        lower_multiple = math.log(max(2**upper_multiple / (2**upper_multiple - 1), 1e-10), 2)

    def cdf(x: float) -> float:  # of the exponential distribution of mean `delay`
        return 1 - math.exp(-x / delay)

    low, high = cdf(max(0.0, delay * lower_multiple)), cdf(delay * upper_multiple)
    return -math.log(max(1 - random.uniform(low, high), 1e-10)) * delay
