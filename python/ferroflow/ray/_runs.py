"""The flow's side of a started `RayTaskRunner`: each claimed run goes to Ray as one
remote call named after the run (a batch's calls made together), and the completion
callback of its report ends it (see `ferroflow._remote`). A run's value stays in the
cluster as its first return; a run on the same cluster receives that ObjectRef, which
Ray resolves in the worker.

With `_session`, the one module that calls Ray for the runner: its partial types stop here.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from ferroflow._remote import Attempt, ClusterRuns, PreparedRun, TaskDefinition
from ferroflow._worker_runs import RAISED, RETURNED, FlowRunIdentity, emit_records
from ferroflow.ray._session import place, ray
from ferroflow.ray._worker import Report, StartLog, attempt_key, containers_among, task_function
from ferroflow.ray.context import options_in


def fetch(refs: list[Any]) -> list[Any]:
    """Brings values kept on the cluster to this process, in one call (`RemoteResult`'s
    `fetch`); a value that cannot be unpickled here raises the error its unpickling raised."""
    try:
        values: list[Any] = ray.get(refs)
    except ray.exceptions.RaySystemError as exc:
        if isinstance(exc.client_exc, Exception):
            raise exc.client_exc from None
        raise
    return values


class RayRuns(ClusterRuns):
    """The runs of one started `RayTaskRunner` on the Ray cluster this process is connected to."""

    # Runs under a time limit tell a `StartLog` actor when they start; the fallback limit
    # asks it when it fires (see `_ask_start`).
    reports_starts = True

    def __init__(self, flow_run: FlowRunIdentity | None) -> None:
        super().__init__(place(), fetch)
        self._flow_run = flow_run
        self._flow_pid = os.getpid()
        #: The tasks on the cluster: definition key -> the remote function of its runs.
        self._functions: dict[str, Any] = {}
        self._functions_lock = threading.Lock()
        #: The `StartLog` actor, made for the first task under a time limit.
        self._start_log: Any = None

    def _launch(self, prepared: list[PreparedRun]) -> None:
        definition: TaskDefinition | None = None
        remote: Any = None
        for item in prepared:
            if item.definition is not definition:  # (a map's runs share theirs)
                definition = item.definition
                remote = self._remote_function(definition)
            kwargs = item.kwargs or {}
            values = (*item.args, *kwargs.values())
            name, run_count, run_id = item.identity
            header = [name, run_count, run_id, len(item.args), list(kwargs), containers_among(values)]
            context = item.run.context
            options: Mapping[str, Any] = {} if context is None else options_in(context)
            value, report = remote.options(name=name, **options).remote(header, *values)
            self._track(Attempt(item, value), value)
            # (Ray's callback on a ref, which `ObjectRef.future()` wraps in a Future of its own.)
            report._on_completed(partial(self._on_done, value))

    def _remote_function(self, definition: TaskDefinition) -> Any:
        """The remote function of a task's runs, made on first use (see `task_function`)."""
        with self._functions_lock:
            function = self._functions.get(definition.key)
            if function is None:
                start_log = None if definition.time_limit is None else self._start_log_actor()
                shared = ((definition.key, definition.blob), self._flow_run, self._flow_pid, start_log)
                # Two returns: the value (stays in the cluster) and the report (comes here).
                # `max_retries=0`: a run whose worker dies is the engine's to end or retry.
                function = ray.remote(num_returns=2, max_retries=0)(task_function(shared))
                self._functions[definition.key] = function
            return function

    def _start_log_actor(self) -> Any:
        """The runner's `StartLog` actor (under `_functions_lock`), made on first use."""
        if self._start_log is None:
            self._start_log = ray.remote(num_cpus=0)(StartLog).remote()
        return self._start_log

    def _ask_start(self, attempt: Attempt, answered: Callable[[], None]) -> bool:
        """Asks the `StartLog` when the attempt started (once per limit while it waits in
        Ray's queue), without waiting for the answer. If the log cannot answer (Ray is
        going away), the attempt is taken to have started long ago: the limit ends it."""
        _, run_count, run_id = attempt.prepared.identity

        def arrived(answer: Any) -> None:
            try:
                wall = answer.result()
            except Exception:
                wall = 0.0
            if wall is not None:
                attempt.started_at = time.monotonic() - max(0.0, time.time() - wall)
            answered()

        self._start_log.started.remote(attempt_key(run_id, run_count)).future().add_done_callback(arrived)
        return True

    def _on_done(self, value: Any, outcome: Report | BaseException) -> None:
        """The completion callback of an attempt's report (on Ray's callback thread): ends
        the attempt whose value is `value`."""
        if isinstance(outcome, BaseException):
            self._ended_without_report(value, outcome)
            return
        kind, detail, records = outcome
        if records:
            emit_records(records)  # its lines come before its end's
        if kind == RETURNED:
            self.completed_remote(value)
        elif kind == RAISED:
            self.raised(value, _raised(*detail))
        else:
            self.returned_here(value, detail)

    def _ended_without_report(self, value: Any, error: BaseException) -> None:
        if isinstance(error, ray.exceptions.RayTaskError):
            # Raised around the task's own call (its value could not be stored, say). The
            # value holds the same error: read here, so Ray does not log it as unhandled.
            with contextlib.suppress(Exception):
                ray.get(value, timeout=0)
            cause: object = getattr(error, "cause", None)
            self.raised(value, cause if isinstance(cause, BaseException) else error)
        else:
            # Its worker died, the cluster lost it, or it was cancelled (by this runner,
            # whose attempt has ended already: then this is a no-op).
            self.crashed(value, _lost(error))

    def _cancel_remote(self, handles: list[Any]) -> None:
        for handle in handles:
            # (It has ended, or the cluster is gone, if this fails: nothing runs there any more.)
            with contextlib.suppress(Exception):
                ray.cancel(handle, force=True)


def _raised(raised: BaseException | None, text: str, trace: str) -> BaseException:
    """The exception a task raised in a Ray worker, its traceback there kept in a note
    (shown under the traceback from Python 3.11)."""
    exception = (
        RuntimeError(f"{text} (the exception could not be pickled in the Ray worker)") if raised is None else raised
    )
    notes: list[str] = [*getattr(exception, "__notes__", ()), f"Raised in a Ray worker:\n{trace.rstrip()}"]
    exception.__notes__ = notes  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]
    return exception


def _lost(exc: BaseException) -> BaseException:
    """Why an attempt ended without a report (its worker died, the cluster lost it)."""
    return RuntimeError(f"its Ray task ended without returning: {type(exc).__name__}: {exc}")
