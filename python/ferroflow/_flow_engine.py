"""Running one flow run: its context, task runner, retries, final state and log lines.

Where ferroflow deliberately differs from Prefect: a flow run waits for every task run
it started before it finishes (Prefect cancels the ones still queued), and Ctrl-C cancels
the runs that have not started (they end Cancelled) before the interrupt propagates.
"""

from __future__ import annotations

import os
import time
import types
import weakref
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, cast

from ferroflow import states
from ferroflow._async import _futures_in, await_future_done
from ferroflow._bridge import RunnerEngine
from ferroflow._core import contains_futures
from ferroflow._naming import generate_slug
from ferroflow.context import FlowRun, FlowRunContext
from ferroflow.futures import resolve_futures_to_results, resolve_futures_to_states, wait
from ferroflow.logging import flow_run_logger, get_logger
from ferroflow.utilities.text import safe_repr

# `flow` below is a `ferroflow.flows.Flow`: that module sits above this one and calls it.


def _run_name(flow: Any, parameters: dict[str, Any]) -> str:
    template = flow.flow_run_name
    if template is None:
        return generate_slug()
    name = template.format(**parameters) if isinstance(template, str) else template()
    if not isinstance(name, str):
        raise TypeError(
            f"Callable {template!r} for 'flow_run_name' returned type {type(name).__name__} but a string is required."
        )
    return name


def _log_prints(flow: Any, parent: FlowRunContext | None) -> bool:
    if flow.log_prints is not None:
        return bool(flow.log_prints)
    if parent is not None:
        return parent.log_prints
    return os.environ.get("FERROFLOW_LOGGING_LOG_PRINTS", os.environ.get("PREFECT_LOGGING_LOG_PRINTS", "")).lower() in (
        "1",
        "true",
        "yes",
    )


class _FlowRun:
    """One flow run's life around its function calls, shared by sync and async flows:
    naming, the begin and end lines, the task runner, the final state."""

    def __init__(self, flow: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        import uuid  # here, not at import: `import ferroflow` stays fast

        parent = FlowRunContext.get()
        parameters = flow._signature.parameters(args, kwargs)
        if parent is not None:
            # A subflow gets values, not its parent's futures (Prefect resolves them first).
            args, kwargs = resolve_futures_to_results((args, kwargs))
        self.flow, self.args, self.kwargs = flow, args, kwargs
        flow_run = FlowRun(uuid.uuid4(), _run_name(flow, parameters), parameters)
        self.logger = flow_run_logger(flow_run.name, flow.name, flow_run.id)
        kind = "flow run" if parent is None else "subflow run"
        self.logger.info(f"Beginning {kind} {flow_run.name!r} for flow {flow.name!r}")
        self.runner = flow.task_runner.duplicate()
        self.context = FlowRunContext(flow, flow_run, self.runner, _log_prints(flow, parent), self.logger)
        #: The flow run's engine: every task run it starts is registered there.
        self.engine: RunnerEngine = self.runner._start(self.context)
        from ferroflow import _progress  # here, not at import: `import ferroflow` stays fast

        #: Ends the progress line's count of this flow run (see `_progress`), if any.
        self.end_progress = _progress.watch(
            flow_run.id, None if parent is None else parent.flow_run.id, flow_run.name, self.engine
        )

    def stop_progress(self) -> None:
        end, self.end_progress = self.end_progress, None
        if end is not None:
            end()

    def failed_attempt(self, exc: Exception) -> bool:
        """Logs a failed call of the flow function; returns whether to call it again."""
        self.logger.error(f"Encountered exception during execution: {safe_repr(exc)}", exc_info=exc)
        if self.context.flow_run.run_count > self.flow.retries:
            return False
        self.logger.info(
            "Received non-final state 'AwaitingRetry' when proposing final state 'Failed' "
            "and will attempt to run again..."
        )
        return True

    def interrupted(self, interrupt: BaseException) -> None:
        """Ctrl-C (or another interrupt): runs that have not started end Cancelled, and so
        do coroutine runs waiting out a retry delay; running ones finish."""
        self.runner._interrupt()
        self.stop_progress()  # the line goes now; what follows is the usual log lines
        self.runner._stop()
        crashed = states.exception_to_crashed_state(interrupt)
        self.logger.error(f"Crash detected! {crashed.message}")
        self.logger.info(f"Finished in state {crashed}")

    def finished(self, state: states.State[Any], returned: Any, return_state: bool) -> Any:
        """Stops the runner (after every run the flow started) and gives the call's value.

        As in Prefect 3: a returned collection of futures or states is handed back as
        states, even when the flow ended Failed because some failed; a single returned
        state (or future), like an exception, raises when it did not complete."""
        try:
            self.runner._stop()
        finally:
            self.stop_progress()  # the line is erased before the run's last log line
        self.logger.info(f"Finished in state {state}")
        if return_state:
            return state
        if isinstance(returned, states.State) or not states.is_state_iterable(_states_of(returned)):
            return state.result()
        return returned


def _states_of(returned: Any) -> Any:
    """The states a returned value is judged by: a list, tuple or set of them, or the
    values of a dict of them."""
    if isinstance(returned, dict):
        return list(cast("Mapping[Any, Any]", returned).values())  # typed: pyright leaves a dict's parts unknown
    return returned


def _returned_state(returned: Any) -> states.State[Any]:
    """The flow run's final state for what its function returned (with its futures
    already turned into their final states, as Prefect does)."""
    judged = _states_of(returned)
    if judged is returned or not states.is_state_iterable(judged):
        return states.return_value_to_state(returned)
    state = states.return_value_to_state(judged)
    state.data = returned  # a dict of states: judged by its values, kept whole
    return state


def run_flow(
    flow: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *, return_state: bool, wait_for: Iterable[Any] | None
) -> Any:
    if wait_for is not None:
        wait(list(wait_for))
    run = _FlowRun(flow, args, kwargs)
    try:
        with run.context.entered():
            while True:
                run.context.flow_run.run_count += 1
                try:
                    returned = flow.fn(*run.args, **run.kwargs)
                except Exception as exc:
                    if run.failed_attempt(exc):
                        run.engine.wait_all()
                        time.sleep(flow.retry_delay_seconds)
                        continue
                    returned = None
                    state = states.exception_to_failed_state(exc, run_kind="Flow run")
                    break
                run.engine.wait_all()
                returned = resolve_futures_to_states(returned)
                state = _returned_state(returned)
                break
    except BaseException as interrupt:
        run.interrupted(interrupt)
        raise
    return run.finished(state, returned, return_state)


async def _wait_all_without_blocking(engine: RunnerEngine) -> None:
    """Waits for the flow run's task runs on a helper thread, so the loop keeps running
    (and skips the hop when none is left)."""
    if not engine.idle:
        import asyncio

        await asyncio.to_thread(engine.wait_all)


def call_async_flow(
    flow: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *, return_state: bool, wait_for: Iterable[Any] | None
) -> Coroutine[Any, Any, Any]:
    """What calling an async flow gives: a real coroutine (as in Prefect) that runs the
    flow when it is awaited or run. One that is dropped without ever starting (usually
    `asyncio.run(my_flow())` where a loop already runs: a notebook) logs what to write."""
    started: list[bool] = []
    made = _run_flow_async(flow, args, kwargs, return_state, wait_for, started)
    # An `async def`'s call is a CoroutineType (pyright says so; mypy says Coroutine).
    coroutine: types.CoroutineType[Any, Any, Any] = made  # type: ignore[assignment]
    name = getattr(flow.fn, "__name__", flow.name)
    coroutine.__name__ = coroutine.__qualname__ = name  # Python's own warnings name the flow
    finalizer = weakref.finalize(coroutine, _never_started, name, started)
    finalizer.atexit = False
    return coroutine


def _never_started(name: str, started: list[bool]) -> None:
    if started:
        return
    import sys

    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and asyncio._get_running_loop() is not None:
        advice = (
            "an event loop is already running here (a notebook?), so `asyncio.run()` cannot be used: "
            f"write `await {name}(...)`"
        )
    else:
        advice = f"call `asyncio.run({name}(...))`, or `await {name}(...)` in async code,"
    get_logger().error(f"Async flow {name!r} was called but its run never started: {advice} to run it.")


async def _run_flow_async(
    flow: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    return_state: bool,
    wait_for: Iterable[Any] | None,
    started: list[bool],
) -> Any:
    """An async flow run: its function runs on the caller's loop; waiting for its task
    runs happens on a helper thread, so the loop keeps running meanwhile."""
    started.append(True)
    import asyncio

    if wait_for is not None:
        for future in list(wait_for):
            await await_future_done(future)
    run = _FlowRun(flow, args, kwargs)
    try:
        with run.context.entered():
            while True:
                run.context.flow_run.run_count += 1
                try:
                    returned = await flow.fn(*run.args, **run.kwargs)
                except Exception as exc:
                    if run.failed_attempt(exc):
                        await _wait_all_without_blocking(run.engine)
                        await asyncio.sleep(flow.retry_delay_seconds)
                        continue
                    returned = None
                    state = states.exception_to_failed_state(exc, run_kind="Flow run")
                    break
                await _wait_all_without_blocking(run.engine)
                if contains_futures(returned):
                    for future in _futures_in(returned):
                        await await_future_done(future)
                returned = resolve_futures_to_states(returned)
                state = _returned_state(returned)
                break
    except BaseException as interrupt:
        run.interrupted(interrupt)
        raise
    return run.finished(state, returned, return_state)
