"""Running one flow run: its context, task runner, parameters, attempts (retries and the
time limit), state hooks, final state and log lines.

Where ferroflow deliberately differs from Prefect: a flow run waits for every task run
it started before it finishes (Prefect cancels the ones still queued), and Ctrl-C cancels
the runs that have not started (they end Cancelled) before the interrupt propagates.

With `timeout_seconds`, an attempt is the call of the flow function *and* the wait for
the task runs it started, within the limit. At the limit the attempt ends `TimedOut`:
its task runs that have not started end Cancelled, and those already executing are not
waited for (they finish on their own, after the flow's last line). The flow returns at
its limit, or retries.
"""

from __future__ import annotations

import os
import sys
import time
import types
import weakref
from collections.abc import Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from ferroflow import states
from ferroflow._async import _futures_in, await_future_done
from ferroflow._bridge import RunnerEngine
from ferroflow._core import contains_futures
from ferroflow._naming import generate_slug
from ferroflow.context import FlowRun, FlowRunContext
from ferroflow.futures import resolve_futures_to_results, resolve_futures_to_states, wait
from ferroflow.logging import flow_run_logger, get_logger
from ferroflow.utilities.text import safe_repr

if TYPE_CHECKING:
    from ferroflow._state_hooks import Hook

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


def _persists(flow: Any) -> bool:
    """Whether a run of `flow` writes its result: its `persist_result`, else the setting
    `FERROFLOW_RESULTS_PERSIST_BY_DEFAULT` (or Prefect's name), as Prefect decides."""
    if flow.persist_result is not None:
        return bool(flow.persist_result)
    from ferroflow import _cache_settings

    return _cache_settings.flag(_cache_settings.PERSIST_BY_DEFAULT)


def _hooks_for(flow: Any, state: states.State[Any]) -> list[Hook]:
    """The hooks a flow run entering `state` calls (Prefect's choice, by the state's type)."""
    hooks: list[Hook]
    if state.is_failed():
        hooks = flow.on_failure_hooks
    elif state.is_completed():
        hooks = flow.on_completion_hooks
    elif state.is_cancelling():
        hooks = flow.on_cancellation_hooks
    elif state.is_crashed():
        hooks = flow.on_crashed_hooks
    elif state.is_running():
        hooks = flow.on_running_hooks
    else:
        hooks = []
    return hooks


class _FlowRun:
    """One flow run's life around its function calls, shared by sync and async flows:
    parameters, naming, the begin and end lines, the task runner, each attempt's end,
    the final state."""

    def __init__(self, flow: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        import uuid  # here, not at import: `import ferroflow` stays fast

        parent = FlowRunContext.get()
        bound = parameters = flow._signature.parameters(args, kwargs)  # a bad call raises here: no run
        #: Whether the run's result is written to storage (Prefect's `persist_result`).
        self.persists = _persists(flow)  # a bad setting raises here too
        if parent is not None:
            # A subflow gets values, not its parent's futures (Prefect resolves them first).
            parameters = resolve_futures_to_results(parameters)
        #: Why the parameters were refused (the run fails without calling the function).
        self.invalid: Exception | None = None
        if flow.should_validate_parameters:
            try:
                parameters = flow._validator.validate(parameters)
            except Exception as exc:  # as Prefect: whatever validation raises fails the run
                self.invalid = exc
        if parameters is not bound:
            args, kwargs = flow._signature.to_call(parameters)
        self.flow, self.args, self.kwargs = flow, args, kwargs
        # Refused parameters do not name the run (Prefect keeps its generated name then).
        name = _run_name(flow, parameters) if self.invalid is None else generate_slug()
        flow_run = FlowRun(uuid.uuid4(), name, parameters)
        self.logger = flow_run_logger(flow_run.name, flow.name, flow_run.id)
        kind = "flow run" if parent is None else "subflow run"
        self.logger.info(f"Beginning {kind} {flow_run.name!r} for flow {flow.name!r}")
        self.parent = parent
        self.runner = flow.task_runner.duplicate()
        self.context = FlowRunContext(flow, flow_run, self.runner, _log_prints(flow, parent), self.logger)
        #: The flow run's engine: every task run it starts is registered there.
        self.engine: RunnerEngine = self.runner._start(self.context)
        #: What the current attempt raises at the time limit (see `attempt_within_limit`).
        self.deadline: BaseException | None = None
        #: Whether the current attempt ran out of time, leaving runs that are not waited for.
        self.abandoned_runs = False
        #: Ends the progress line's count of this flow run (see `_progress`), if any.
        self.end_progress = self._watch_progress()

    def _watch_progress(self) -> Any:
        from ferroflow import _progress  # here, not at import: `import ferroflow` stays fast

        flow_run = self.context.flow_run
        parent_id = None if self.parent is None else self.parent.flow_run.id
        return _progress.watch(flow_run.id, parent_id, flow_run.name, self.engine)

    def stop_progress(self) -> None:
        end, self.end_progress = self.end_progress, None
        if end is not None:
            end()

    # -- the attempts --------------------------------------------------------------------

    def refused(self, invalid: Exception) -> states.State[Any]:
        """The end of a run whose parameters failed validation (Prefect's line and state)."""
        message = "Validation of flow parameters failed with error:"
        self.logger.error(f"{message} {invalid}")
        return states.exception_to_failed_state(invalid, run_kind="Flow run", message=message)

    def call_hooks(self, hooks: list[Hook], state: states.State[Any]) -> None:
        """Calls the hooks for `state`, in this thread (see `ferroflow._state_hooks`; a
        flow without hooks never loads it)."""
        if hooks:
            from ferroflow._state_hooks import call_hooks

            call_hooks(hooks, self.flow, self.context.flow_run, state, self.logger)

    async def acall_hooks(self, hooks: list[Hook], state: states.State[Any]) -> None:
        """`call_hooks` for an async flow: async hooks are awaited on its loop."""
        if hooks:
            from ferroflow._state_hooks import acall_hooks

            await acall_hooks(hooks, self.flow, self.context.flow_run, state, self.logger)

    def starting_attempt(self) -> list[Hook]:
        """Counts the attempt about to start; gives the `on_running` hooks to call."""
        self.context.flow_run.run_count += 1
        self.deadline = None
        self.abandoned_runs = False
        hooks: list[Hook] = self.flow.on_running_hooks
        return hooks

    def attempt(self) -> Any:
        """One attempt: the flow function, then the wait for the task runs it started;
        returned futures become their final states."""
        returned = self.flow.fn(*self.args, **self.kwargs)
        self.engine.wait_all()
        return resolve_futures_to_states(returned)

    async def attempt_async(self) -> Any:
        """One attempt of an async flow; waiting for its task runs keeps the loop running."""
        returned = await self.flow.fn(*self.args, **self.kwargs)
        await _wait_all_without_blocking(self.engine)
        if contains_futures(returned):
            for future in _futures_in(returned):
                await await_future_done(future)
        return resolve_futures_to_states(returned)

    def attempt_within_limit(self) -> Any:
        """`attempt` under the flow's time limit: in the main thread it is interrupted
        where it is (SIGALRM); elsewhere it runs on a helper thread that is left behind,
        told to stop (see `ferroflow._timeouts`)."""
        from ferroflow._timeouts import call_with_timeout

        return call_with_timeout(self.attempt, (), {}, self.flow.timeout_seconds, self._deadline_error)

    async def attempt_async_within_limit(self) -> Any:
        """`attempt_async` under the flow's time limit: cancelled at its next `await`."""
        from ferroflow._timeouts import await_with_timeout

        return await await_with_timeout(self.attempt_async(), self.flow.timeout_seconds, self._deadline_error)

    def _deadline_error(self) -> BaseException:
        """What an attempt raises at the flow's time limit: Prefect's FlowRunTimeoutError.
        It is kept, so the run tells it from a TimeoutError its code raised (a subflow's)."""
        from ferroflow.flow_engine import FlowRunTimeoutError

        self.deadline = FlowRunTimeoutError(f"Scope timed out after {self.flow.timeout_seconds} second(s).")
        return self.deadline

    def completed_attempt(self, returned: Any) -> states.State[Any]:
        """The state for what an attempt returned; its result is written to the flow's
        result storage if the flow persists results."""
        state = _returned_state(returned)
        if self.persists:
            self._persist(state)
        return state

    def _persist(self, state: states.State[Any]) -> None:
        """Writes the run's result (what Prefect writes: the state's data) as a record
        under a fresh key, where the flow's result options say; a write that fails is a
        WARNING, and the run keeps its state, as in Prefect."""
        from ferroflow.results import ResultStore

        flow = self.flow
        try:
            store = ResultStore(
                result_storage=flow.result_storage,
                serializer=flow.result_serializer,
                cache_result_in_memory=flow.cache_result_in_memory,
            )
            store.write(state.data)
        except Exception as exc:
            self.logger.warning(
                f"Encountered an error while persisting result: {exc} Execution will continue, "
                "but the result has not been persisted"
            )

    def attempt_failed(self, exc: Exception) -> states.State[Any]:
        """The state an attempt that raised ends in, with Prefect's line. A TimeoutError is
        `TimedOut` (as in Prefect, also one the function raised itself); at the flow's own
        limit, runs of the attempt that have not started are cancelled, and those
        executing are abandoned: nothing waits for them."""
        if not isinstance(exc, TimeoutError):
            self.logger.error(f"Encountered exception during execution: {safe_repr(exc)}", exc_info=exc)
            return states.exception_to_failed_state(exc, run_kind="Flow run")
        if exc is self.deadline:
            message = f"Flow run exceeded timeout of {self.flow.timeout_seconds} second(s)"
            self.runner._interrupt_pending()
            self.abandoned_runs = True
        else:
            message = f"Flow run failed due to timeout: {safe_repr(exc)}"
        self.logger.error(message)
        return states.Failed(name="TimedOut", message=message, data=exc)

    def leave_runs_behind(self) -> None:
        """Before the retry of an attempt that ran out of time: the runs it left executing
        keep their runner, stopped once they end, and the retry gets a fresh one, so its
        own limit covers its own runs only (its progress line starts afresh)."""
        self.stop_progress()
        self._stop_runner_later()
        self.runner = self.flow.task_runner.duplicate()
        self.context.task_runner = self.runner
        self.engine = self.runner._start(self.context)
        self.end_progress = self._watch_progress()

    def retrying(self, failed: states.State[Any]) -> bool:
        """Whether to call the function again after an attempt ended `failed` (retries
        remain), with Prefect's line saying so."""
        if self.context.flow_run.run_count > self.flow.retries:
            return False
        self.logger.info(
            f"Received non-final state 'AwaitingRetry' when proposing final state {failed.name!r} "
            "and will attempt to run again..."
        )
        return True

    # -- the end ---------------------------------------------------------------------------

    def interrupted(self, interrupt: BaseException) -> None:
        """Ctrl-C (or another interrupt): runs that have not started end Cancelled, and so
        do coroutine runs waiting out a retry delay; running ones finish (unless an outer
        flow's time limit interrupted this one: that flow does not wait for them). Then
        the run is Crashed, and its `on_crashed` hooks run (outside the flow run's
        context, as Prefect's; an async hook runs on a loop of its own)."""
        self.runner._interrupt()
        self.stop_progress()  # the line goes now; what follows is the usual log lines
        if _is_time_limit(interrupt):
            self._stop_runner_later()
        else:
            self.runner._stop()
        crashed = states.exception_to_crashed_state(interrupt)
        self.logger.error(f"Crash detected! {crashed.message}")
        self.call_hooks(_hooks_for(self.flow, crashed), crashed)
        self.logger.info(f"Finished in state {crashed}")

    def finished(self, state: states.State[Any], returned: Any, return_state: bool) -> Any:
        """Stops the runner (after every run the flow started, unless the run ran out of
        time) and gives the call's value.

        As in Prefect 3: a returned collection of futures or states is handed back as
        states, even when the flow ended Failed because some failed; a single returned
        state (or future), like an exception, raises when it did not complete."""
        try:
            if self.abandoned_runs:
                self._stop_runner_later()
            else:
                self.runner._stop()
        finally:
            self.stop_progress()  # the line is erased before the run's last log line
        self.logger.info(f"Finished in state {state}")
        if return_state:
            return state
        if isinstance(returned, states.State) or not states.is_state_iterable(_states_of(returned)):
            return state.result()
        return returned

    def _stop_runner_later(self) -> None:
        """Stops the runner once the runs still executing end, on a thread of its own, so
        the flow returns at its time limit. Not a daemon: the interpreter's exit waits for
        those runs, as it does for any started run."""
        import threading

        threading.Thread(target=self.runner._stop, name=f"ferroflow-stop-{self.context.flow_run.name}").start()


def _is_time_limit(interrupt: BaseException) -> bool:
    """Whether `interrupt` is a time limit's (`ferroflow._timeouts`), stopping a call that
    ran past it. None can be where that module was never loaded."""
    timeouts = sys.modules.get("ferroflow._timeouts")
    return timeouts is not None and isinstance(interrupt, timeouts.TimeoutInterrupt)


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
            state, returned = _attempts(run) if run.invalid is None else (run.refused(run.invalid), None)
            run.call_hooks(_hooks_for(flow, state), state)
    except BaseException as interrupt:
        run.interrupted(interrupt)
        raise
    return run.finished(state, returned, return_state)


def _attempts(run: _FlowRun) -> tuple[states.State[Any], Any]:
    """Calls the flow function until an attempt completes or no retry is left; gives the
    final state and what the function returned."""
    while True:
        running_hooks = run.starting_attempt()
        if running_hooks:
            run.call_hooks(running_hooks, states.Running())
        try:
            returned = run.attempt() if run.flow.timeout_seconds is None else run.attempt_within_limit()
        except Exception as exc:
            failed = run.attempt_failed(exc)
        else:
            return run.completed_attempt(returned), returned
        if not run.retrying(failed):
            return failed, None
        if run.abandoned_runs:
            run.leave_runs_behind()
        else:
            run.engine.wait_all()
        time.sleep(run.flow.retry_delay_seconds)


async def _wait_all_without_blocking(engine: RunnerEngine) -> None:
    """Waits for the flow run's task runs on a helper thread, so the loop keeps running
    (and skips the hop when none is left). The thread is a daemon of its own, not one of
    the loop's executor: a wait cancelled at a time limit leaves it behind, and
    `asyncio.run` would otherwise join it before returning."""
    if engine.idle:
        return
    import asyncio
    import threading

    loop = asyncio.get_running_loop()
    idle: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if idle.done():
            return  # the wait was cancelled meanwhile
        if error is None:
            idle.set_result(None)
        else:
            idle.set_exception(error)

    def wait() -> None:
        error: BaseException | None = None
        try:
            engine.wait_all()
        except BaseException as exc:  # handed to the awaiting flow, which raises it
            error = exc
        try:
            loop.call_soon_threadsafe(settle, error)
        except RuntimeError:
            pass  # the loop has closed: nobody waits any more

    threading.Thread(target=wait, name="ferroflow-flow-wait", daemon=True).start()
    await idle


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
    """An async flow run: its function and hooks run on the caller's loop; waiting for
    its task runs happens on a helper thread, so the loop keeps running meanwhile."""
    started.append(True)
    if wait_for is not None:
        for future in list(wait_for):
            await await_future_done(future)
    run = _FlowRun(flow, args, kwargs)
    try:
        with run.context.entered():
            state, returned = await _attempts_async(run) if run.invalid is None else (run.refused(run.invalid), None)
            await run.acall_hooks(_hooks_for(flow, state), state)
    except BaseException as interrupt:
        run.interrupted(interrupt)
        raise
    return run.finished(state, returned, return_state)


async def _attempts_async(run: _FlowRun) -> tuple[states.State[Any], Any]:
    """`_attempts` for an async flow."""
    import asyncio

    while True:
        running_hooks = run.starting_attempt()
        if running_hooks:
            await run.acall_hooks(running_hooks, states.Running())
        try:
            if run.flow.timeout_seconds is None:
                returned = await run.attempt_async()
            else:
                returned = await run.attempt_async_within_limit()
        except Exception as exc:
            failed = run.attempt_failed(exc)
        else:
            return run.completed_attempt(returned), returned
        if not run.retrying(failed):
            return failed, None
        if run.abandoned_runs:
            run.leave_runs_behind()
        else:
            await _wait_all_without_blocking(run.engine)
        await asyncio.sleep(run.flow.retry_delay_seconds)
