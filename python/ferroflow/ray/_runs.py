"""The flow's side of a started `RayTaskRunner`: each claimed run goes to Ray as one
remote call named after the run (a batch's calls made together), and the completion
callback of its report ends it (see `ferroflow._remote`). A run's value stays in the
cluster as its first return; a run on the same cluster receives that ObjectRef, which
Ray resolves in the worker.

With `_session`, the one module that calls Ray for the runner: its partial types stop here.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Mapping
from functools import partial
from typing import Any

from ferroflow._remote import Attempt, ClusterRuns, PreparedRun, TaskDefinition
from ferroflow._worker_runs import RAISED, RETURNED, FlowRunIdentity, emit_records
from ferroflow.ray._session import place, ray
from ferroflow.ray._worker import Report, containers_among, run_task
from ferroflow.ray.context import options_in


def fetch(ref: Any) -> Any:
    """Brings a value kept on the cluster to this process (`RemoteResult`'s `fetch`); a
    value that cannot be unpickled here raises the error its unpickling raised."""
    try:
        return ray.get(ref)
    except ray.exceptions.RaySystemError as exc:
        if isinstance(exc.client_exc, Exception):
            raise exc.client_exc from None
        raise


class RayRuns(ClusterRuns):
    """The runs of one started `RayTaskRunner` on the Ray cluster this process is connected to."""

    def __init__(self, flow_run: FlowRunIdentity | None) -> None:
        super().__init__(place(), fetch)
        self._flow_run = flow_run
        self._flow_pid = os.getpid()
        #: The tasks on the cluster: definition key -> ObjectRef of `(key, cloudpickled
        #: task)`, put once (each worker loads a task once, by its key).
        self._shipped: dict[str, Any] = {}
        self._shipping = threading.Lock()
        # Two returns: the value (stays in the cluster) and the report (comes here).
        # `max_retries=0`: a run whose worker dies is the engine's to end or retry.
        self._remote = ray.remote(num_returns=2, max_retries=0)(run_task)

    def _launch(self, prepared: list[PreparedRun]) -> None:
        remote = self._remote
        for item in prepared:
            kwargs = item.kwargs or {}
            values = (*item.args, *kwargs.values())
            header = (
                self._flow_run,
                self._flow_pid,
                item.identity,
                len(item.args),
                tuple(kwargs),
                containers_among(values),
            )
            context = item.run.context
            options: Mapping[str, Any] = {} if context is None else options_in(context)
            value, report = remote.options(name=item.name, **options).remote(
                self._ship(item.definition), header, *values
            )
            self._track(Attempt(item, value), value)
            report.future().add_done_callback(partial(self._on_done, value))

    def _ship(self, definition: TaskDefinition) -> Any:
        with self._shipping:
            shipped = self._shipped.get(definition.key)
            if shipped is None:
                shipped = ray.put((definition.key, definition.blob))
                self._shipped[definition.key] = shipped
            return shipped

    def _on_done(self, value: Any, report: Any) -> None:
        """The done-callback of an attempt's report (on Ray's callback thread): ends the
        attempt whose value is `value`."""
        try:
            outcome: Report = report.result()
            kind, detail, records = outcome
        except ray.exceptions.RayTaskError as exc:
            # Raised around the task's own call (its value could not be stored, say).
            self.raised(value, exc.cause if isinstance(exc.cause, BaseException) else exc)
            return
        except BaseException as exc:
            # Its worker died, the cluster lost it, or it was cancelled (by this runner,
            # whose attempt has ended already: then this is a no-op).
            self.crashed(value, _lost(exc))
            return
        if records:
            emit_records(pickle.loads(records))  # its lines come before its end's
        if kind == RETURNED:
            self.completed_remote(value)
        elif kind == RAISED:
            self.raised(value, _raised(*detail))
        else:
            self.returned_here(value, detail)

    def _cancel_remote(self, handles: list[Any]) -> None:
        for handle in handles:
            try:
                ray.cancel(handle, force=True)
            except Exception:
                pass  # it has ended, or the cluster is gone: nothing runs there any more


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
