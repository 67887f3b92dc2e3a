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
from ferroflow._naming import generate_slug
from ferroflow.context import FlowRun, FlowRunContext
from ferroflow.futures import resolve_futures_to_states, wait
from ferroflow.logging import flow_run_logger

if TYPE_CHECKING:
    from ferroflow.flows import Flow


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


def run_flow(flow: Flow, args: tuple, kwargs: dict[str, Any], *, return_state: bool, wait_for: Iterable[Any] | None) -> Any:
    parent = FlowRunContext.get()
    if wait_for is not None:
        wait(list(wait_for))
    parameters = flow._signature.parameters(args, kwargs)
    if parent is not None:
        # A subflow gets values, not its parent's futures (Prefect resolves them first).
        from ferroflow.futures import resolve_futures_to_results

        args, kwargs = resolve_futures_to_results((args, kwargs))
    flow_run = FlowRun(uuid.uuid4(), _run_name(flow, parameters), parameters)
    logger = flow_run_logger(flow_run.name, flow.name, flow_run.id)
    if parent is None:
        logger.info(f"Beginning flow run {flow_run.name!r} for flow {flow.name!r}")
    else:
        logger.info(f"Beginning subflow run {flow_run.name!r} for flow {flow.name!r}")
    runner = flow.task_runner.duplicate()
    context = FlowRunContext(flow, flow_run, runner, _log_prints(flow, parent), logger)
    runner._start(context)
    try:
        with context.entered():
            state = _run_attempts(flow, context, args, kwargs)
    except BaseException as interrupt:
        # Ctrl-C (or another interrupt): runs that have not started end Cancelled.
        runner._cancel_pending()
        runner._stop()
        crashed = states.exception_to_crashed_state(interrupt)
        logger.error(f"Crash detected! {crashed.message}")
        logger.info(f"Finished in state {crashed}")
        raise
    runner._stop()  # waits for every run the flow started
    logger.info(f"Finished in state {state}")
    if return_state:
        return state
    return state.result()


def _run_attempts(flow: Flow, context: FlowRunContext, args: tuple, kwargs: dict[str, Any]) -> states.State:
    """Calls the flow function, again after a failure while retries remain."""
    logger = context.logger
    while True:
        context.flow_run.run_count += 1
        try:
            returned = flow.fn(*args, **kwargs)
        except Exception as exc:
            logger.error(f"Encountered exception during execution: {exc!r}", exc_info=exc)
            if context.flow_run.run_count <= flow.retries:
                logger.info("Received non-final state 'AwaitingRetry' when proposing final state 'Failed' and will attempt to run again...")
                context.task_runner._wait_all()
                time.sleep(flow.retry_delay_seconds)
                continue
            return states.exception_to_failed_state(exc, run_kind="Flow run")
        # Returned futures (also inside containers) become their final States (Prefect).
        context.task_runner._wait_all()
        return states.return_value_to_state(resolve_futures_to_states(returned))
