"""Running one flow run: its context, task runner, retries, final state and log lines.

Where ferroflow deliberately differs from Prefect: a flow run waits for every task run
it started before it finishes (Prefect cancels the ones still queued), and Ctrl-C cancels
the runs that have not started (they end Cancelled) before the interrupt propagates.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import TYPE_CHECKING, Any, Iterable

from ferroflow import states
from ferroflow._core import contains_futures
from ferroflow._naming import generate_slug
from ferroflow.context import FlowRun, FlowRunContext
from ferroflow.futures import resolve_futures_to_results, resolve_futures_to_states, wait
from ferroflow.logging import flow_run_logger

if TYPE_CHECKING:
    from ferroflow.flows import Flow
    from ferroflow.task_runners import TaskRunner


def _run_name(flow: Flow, parameters: dict[str, Any]) -> str:
    template = flow.flow_run_name
    if template is None:
        return generate_slug()
    name = template.format(**parameters) if isinstance(template, str) else template()
    if not isinstance(name, str):
        raise TypeError(f"Callable {template!r} for 'flow_run_name' returned type {type(name).__name__} but a string is required.")
    return name


def _log_prints(flow: Flow, parent: FlowRunContext | None) -> bool:
    if flow.log_prints is not None:
        return flow.log_prints
    if parent is not None:
        return parent.log_prints
    return os.environ.get("FERROFLOW_LOGGING_LOG_PRINTS", os.environ.get("PREFECT_LOGGING_LOG_PRINTS", "")).lower() in ("1", "true", "yes")


class _FlowRun:
    """One flow run's life around its function calls, shared by sync and async flows:
    naming, the begin and end lines, the task runner, the final state."""

    def __init__(self, flow: Flow, args: tuple, kwargs: dict[str, Any]) -> None:
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
        self.runner._start(self.context)

    def failed_attempt(self, exc: Exception) -> bool:
        """Logs a failed call of the flow function; returns whether to call it again."""
        self.logger.error(f"Encountered exception during execution: {exc!r}", exc_info=exc)
        if self.context.flow_run.run_count > self.flow.retries:
            return False
        self.logger.info("Received non-final state 'AwaitingRetry' when proposing final state 'Failed' and will attempt to run again...")
        return True

    def interrupted(self, interrupt: BaseException) -> None:
        """Ctrl-C (or another interrupt): runs that have not started end Cancelled."""
        self.runner._cancel_pending()
        self.stop()
        crashed = states.exception_to_crashed_state(interrupt)
        self.logger.error(f"Crash detected! {crashed.message}")
        self.logger.info(f"Finished in state {crashed}")

    def stop(self) -> None:
        self.runner._stop()  # waits for every run the flow started
        self.context.close_run_loop()

    def finished(self, state: states.State, return_state: bool) -> Any:
        self.stop()
        self.logger.info(f"Finished in state {state}")
        if return_state:
            return state
        return state.result()


def _returned_state(returned: Any) -> states.State:
    # Returned futures (also inside containers) become their final States (Prefect).
    return states.return_value_to_state(resolve_futures_to_states(returned))


def run_flow(flow: Flow, args: tuple, kwargs: dict[str, Any], *, return_state: bool, wait_for: Iterable[Any] | None) -> Any:
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
                        run.runner._wait_all()
                        time.sleep(flow.retry_delay_seconds)
                        continue
                    state = states.exception_to_failed_state(exc, run_kind="Flow run")
                    break
                run.runner._wait_all()
                state = _returned_state(returned)
                break
    except BaseException as interrupt:
        run.interrupted(interrupt)
        raise
    return run.finished(state, return_state)


async def _wait_all_without_blocking(runner: TaskRunner) -> None:
    """Waits for the flow run's task runs on a helper thread, so the loop keeps running
    (and skips the hop when none is left)."""
    if not runner._idle():
        import asyncio

        await asyncio.to_thread(runner._wait_all)


async def run_flow_async(flow: Flow, args: tuple, kwargs: dict[str, Any], *, return_state: bool, wait_for: Iterable[Any] | None) -> Any:
    """An async flow run: its function runs on the caller's loop; waiting for its task
    runs happens on a helper thread, so the loop keeps running meanwhile."""
    import asyncio

    from ferroflow._async import _futures_in, await_future_done

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
                        await _wait_all_without_blocking(run.runner)
                        await asyncio.sleep(flow.retry_delay_seconds)
                        continue
                    state = states.exception_to_failed_state(exc, run_kind="Flow run")
                    break
                await _wait_all_without_blocking(run.runner)
                if contains_futures(returned):
                    for future in _futures_in(returned):
                        await await_future_done(future)
                state = _returned_state(returned)
                break
    except BaseException as interrupt:
        run.interrupted(interrupt)
        raise
    return run.finished(state, return_state)
