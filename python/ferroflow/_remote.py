"""What the runners that execute on a cluster (`DaskTaskRunner`, `RayTaskRunner`) share
in the flow's process: preparing claimed runs, shipping their tasks once, and ending
each attempt exactly once through the engine.

A cluster runner's `_execute(runs)` hands the engine's claimed runs to a `ClusterRuns`
of its own (a subclass per cluster), which:

- prepares them for its *place* (`_core.prepare_runs(runs, place)`): an upstream value
  kept on the same cluster arrives in the arguments as its handle (a Dask future, a Ray
  ObjectRef), which the cluster resolves where the run executes;
- gives each task a `TaskDefinition` (cloudpickled once, loaded once per worker by
  `ferroflow._worker_runs.run_in_cluster_worker`);
- calls the subclass's `_launch(prepared)` with the batch (one `client.map` or a batch
  of `.remote` calls), which starts an `Attempt` per run and arranges for the cluster's
  callback to end it (`completed_remote`, `raised`, `crashed`, `cancelled`);
- ends every attempt once: whichever of its callback, its time limit and an interrupt
  comes first wins. A failed attempt with retries left waits out its delay on the
  shared timer thread (no worker sleeps through it) and is launched again.

A completed run's value stays in the cluster: the run ends with a
`_core.RemoteResult(handle, place, fetch)`, and the engine fetches the value only
where it must reach this process (a map's values in one `fetch` call) (see rust/ferroflow-py/src/remote.rs).
"""

from __future__ import annotations

import abc
import heapq
import itertools
import pickle
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ferroflow import _core
from ferroflow._bridge import ClaimedRun, crash
from ferroflow._worker_runs import cloudpickled

__all__ = [
    "Attempt",
    "ClusterRuns",
    "PreparedRun",
    "RemoteResult",
    "TaskDefinition",
    "Timers",
    "timed_out_error",
]

#: A run's value kept on a cluster (see the module docs).
RemoteResult = _core.RemoteResult

#: How long past its `timeout_seconds` a run's attempt may go before the flow's process
#: ends it TimedOut and cancels its remote work: the limit acts in the worker first, from
#: the run's start (see `ferroflow._timeouts`); this ends a run whose worker cannot stop
#: it (counted from its start where the runner reports starts, else from its launch).
KILL_GRACE = 1.0
#: How long a cluster asked when an attempt started may take to answer before the attempt
#: is taken to have started long ago (its limit then ends it).
START_QUERY_PATIENCE = 10.0


@dataclass(frozen=True, slots=True)
class TaskDefinition:
    """A task as it travels to cluster workers: `key` names it (a worker loads each key
    once), `blob` is the cloudpickled task, `time_limit` its `timeout_seconds`, `retries`
    its retries (an attempt lost with its worker is retried while some remain)."""

    key: str
    blob: bytes
    time_limit: float | None
    retries: int


@dataclass(slots=True)
class PreparedRun:
    """A claimed run ready to launch: its task's definition, its arguments (upstream
    values on this cluster as handles) and `identity` (`(name, run_count, id bytes)`)."""

    run: ClaimedRun
    definition: TaskDefinition
    args: tuple[Any, ...]
    kwargs: dict[str, Any] | None
    identity: tuple[str, int, bytes]

    @property
    def name(self) -> str:
        return self.identity[0]


class Attempt:
    """One launched attempt of a run: it ends once, by whichever comes first of its
    cluster's callback, its time limit (`expire`) and an interrupt."""

    __slots__ = ("_ended", "deadline", "handle", "prepared", "start_query", "started_at")

    def __init__(self, prepared: PreparedRun, handle: Any) -> None:
        self.prepared = prepared
        #: The cluster's handle on the attempt (a Dask future, a Ray ObjectRef).
        self.handle = handle
        #: The timer of its time limit, if its task has one.
        self.deadline: Timers.Entry | None = None
        #: When (monotonic) the cluster reported it started, for a runner that reports it.
        self.started_at: float | None = None
        #: For a cluster asked when an attempt started (`ClusterRuns._ask_start`): None,
        #: "asking" while the question is out, "answered" once it came back.
        self.start_query: str | None = None
        self._ended = threading.Lock()

    @property
    def run(self) -> ClaimedRun:
        return self.prepared.run

    def claim_end(self) -> bool:
        """True for the first caller only: it ends the attempt."""
        if not self._ended.acquire(blocking=False):
            return False
        if self.deadline is not None:
            self.deadline.cancel()
        return True


class Timers:
    """One daemon thread that calls functions at their due time (monotonic): the retry
    delays and time limits of every cluster runner in the process."""

    class Entry:
        __slots__ = ("cancelled", "function")

        def __init__(self, function: Callable[[], object]) -> None:
            self.function = function
            self.cancelled = False

        def cancel(self) -> None:
            self.cancelled = True

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Timers.Entry]] = []
        self._sequence = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, function: Callable[[], object]) -> Timers.Entry:
        entry = Timers.Entry(function)
        with self._changed:
            heapq.heappush(self._due, (time.monotonic() + delay, next(self._sequence), entry))
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="ferroflow-cluster-timers", daemon=True)
                self._thread.start()
            self._changed.notify()
        return entry

    def _serve(self) -> None:
        while True:
            with self._changed:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._changed.wait(None if not self._due else self._due[0][0] - time.monotonic())
                _, _, entry = heapq.heappop(self._due)
            if not entry.cancelled:
                try:
                    entry.function()
                except BaseException as exc:  # a timer must never stop the others
                    from ferroflow.logging import get_logger

                    get_logger("task_runner").error(f"A cluster runner's timer failed: {exc!r}")


_timers = Timers()


class ClusterRuns(abc.ABC):
    """The flow's side of one started cluster runner (see the module docs). Subclasses
    give `place` and `fetch`, and implement `_launch` and `_cancel_remote`."""

    #: Whether the subclass reports when an attempt under a time limit starts executing
    #: (`started`): the flow's fallback limit then counts from that start, so a run that
    #: waits in the cluster's queue is not ended TimedOut; else it counts from the launch.
    reports_starts = False

    def __init__(self, place: object, fetch: Callable[[list[Any]], Sequence[object]]) -> None:
        #: The cluster's identity (compared with `==`): runs prepared here receive the
        #: values kept in the same place as their handles.
        self.place = place
        #: `fetch([handle, ...])`: brings values kept on the cluster to this process (many
        #: in one call: a map's `.result()`). A plain function: the engine holds it with
        #: the values, and must not hold the runner.
        self._fetch = fetch
        self._lock = threading.Lock()
        #: Attempts launched and not ended, by their handle's key (see `_track`).
        self._attempts: dict[Any, Attempt] = {}
        #: function id -> (the function, kept so its id stays its own; its definition or
        #: why it cannot travel).
        self._definitions: dict[int, tuple[Callable[..., Any], TaskDefinition | Exception]] = {}
        self._keys = itertools.count()
        self._interrupted = False

    # -- what the runner calls ------------------------------------------------------------

    def submit(self, runs: list[ClaimedRun]) -> None:
        """Prepares claimed runs and launches them (from an engine thread, or the timer
        thread for a retry)."""
        if self._interrupted:
            for run in runs:
                run.cancel()
            return
        prepared = self._prepare(runs)
        if prepared:
            self._launch(prepared)

    def interrupt(self) -> None:
        """Ctrl-C: every attempt in the cluster is cancelled there and its run ends
        Crashed; runs handed over from now on end Cancelled."""
        with self._lock:
            self._interrupted = True
            attempts = list(self._attempts.values())
            self._attempts.clear()
        claimed = [attempt for attempt in attempts if attempt.claim_end()]  # (not those ending now)
        if claimed:
            self._cancel_remote([attempt.handle for attempt in claimed])
        for attempt in claimed:
            crash(attempt.run, KeyboardInterrupt("its cluster task was cancelled by an interrupt"))

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._attempts)

    # -- for subclasses ---------------------------------------------------------------------

    @abc.abstractmethod
    def _launch(self, prepared: list[PreparedRun]) -> None:
        """Sends the prepared runs to the cluster in one batch and `_track`s each attempt
        (before its completion can be reported)."""

    @abc.abstractmethod
    def _cancel_remote(self, handles: list[Any]) -> None:
        """Cancels the attempts' remote work (their runs are ended already); never raises."""

    def task_key(self, prepared: PreparedRun) -> str:
        """A unique key for an attempt, its run's name first (the cluster's tools show it)."""
        return f"{prepared.name}-{next(self._keys)}"

    def _track(self, attempt: Attempt, key: Any) -> None:
        """Registers a launched attempt under its handle's `key`, and its time limit."""
        limit = attempt.prepared.definition.time_limit
        if limit is not None:
            attempt.deadline = _timers.call_later(limit + KILL_GRACE, lambda: self._expire(attempt, key, limit))
        with self._lock:
            self._attempts[key] = attempt

    def started(self, key: Any) -> None:
        """The attempt under `key` started executing on the cluster (see `reports_starts`)."""
        with self._lock:
            attempt = self._attempts.get(key)
        if attempt is not None and attempt.started_at is None:
            attempt.started_at = time.monotonic()

    def _ask_start(self, attempt: Attempt, answered: Callable[[], None]) -> bool:
        """For a cluster that tells an attempt's start only when asked (the fallback limit
        fires while `started` said nothing): sends the question, without waiting, and
        returns True; once the answer came, with `attempt.started_at` set if it started,
        `answered` is called (from any thread). A cluster that reports starts as they
        happen asks nothing."""
        return False

    def _start_answered(self, attempt: Attempt, key: Any, limit: float) -> None:
        """The cluster answered when the attempt started: the limit's check goes on, on
        the timer thread (unless the attempt ended, or the answer came too late)."""
        if attempt.start_query != "asking":
            return
        attempt.start_query = "answered"
        if attempt.deadline is not None:
            attempt.deadline.cancel()
        attempt.deadline = _timers.call_later(0.0, lambda: self._expire(attempt, key, limit))

    def _untrack(self, key: Any) -> Attempt | None:
        with self._lock:
            return self._attempts.pop(key, None)

    # -- an attempt's end (from the cluster's callback) -------------------------------------

    def completed_remote(self, key: Any) -> None:
        """The attempt returned; its value stays in the cluster (the handle's)."""
        attempt = self._untrack(key)
        if attempt is None or not attempt.claim_end():
            return
        self._after(attempt.run, _complete, RemoteResult(attempt.handle, self.place, self._fetch))

    def returned_here(self, key: Any, value: object) -> None:
        """The attempt returned a value that came to this process (a State the task
        returned: the engine reads what it means)."""
        attempt = self._untrack(key)
        if attempt is None or not attempt.claim_end():
            return
        self._after(attempt.run, _complete, value)

    def raised(self, key: Any, exception: BaseException) -> None:
        """The attempt raised `exception` (the task's own): retried by the task's policy."""
        attempt = self._untrack(key)
        if attempt is None or not attempt.claim_end():
            return
        self._after(attempt.run, _fail, exception)

    def crashed(self, key: Any, exception: BaseException) -> None:
        """The attempt could not run to its end (its worker died, the cluster lost it):
        the run is retried if its task has retries left (by its retry policy), else it
        ends Crashed."""
        attempt = self._untrack(key)
        if attempt is None or not attempt.claim_end():
            return
        prepared = attempt.prepared
        run_count = prepared.identity[1]
        if run_count <= prepared.definition.retries:
            self._after(attempt.run, _fail, exception)
        else:
            crash(attempt.run, exception)

    def _expire(self, attempt: Attempt, key: Any, limit: float) -> None:
        """The attempt's time limit (and its grace) passed in this process first: counted
        from its start where the subclass reports starts (checked again later while it
        has not started), else from its launch. Runs on the timer thread, which it never
        blocks: a cluster asked when the attempt started answers later (`_ask_start`),
        and its answer brings the check back here."""
        if self.reports_starts:
            if attempt.started_at is None and attempt.start_query is None:
                attempt.start_query = "asking"
                if self._ask_start(attempt, lambda: self._start_answered(attempt, key, limit)):
                    # Unanswered in time, the attempt is taken to have started long ago.
                    patience = START_QUERY_PATIENCE
                    attempt.deadline = _timers.call_later(patience, lambda: self._expire(attempt, key, limit))
                    return
                attempt.start_query = None  # (nothing to ask: `started` tells)
            unanswered, attempt.start_query = attempt.start_query == "asking", None
            started = attempt.started_at
            wait = 0.0 if unanswered else limit + KILL_GRACE
            if started is not None:
                wait = started + limit + KILL_GRACE - time.monotonic()
            if wait > 0:
                attempt.deadline = _timers.call_later(wait, lambda: self._expire(attempt, key, limit))
                return
        if self._untrack(key) is None or not attempt.claim_end():
            return
        self._cancel_remote([attempt.handle])
        self._after(attempt.run, _fail, timed_out_error(limit))

    def _after(self, run: ClaimedRun, end: Callable[[ClaimedRun, Any], float | None], outcome: Any) -> None:
        """Ends an attempt through the engine; one it retries is launched again after
        its delay."""
        try:
            delay = end(run, outcome)
        except Exception as exc:
            crash(run, exc)
            return
        if delay is not None:
            _timers.call_later(delay, lambda: self._retry(run))

    def _retry(self, run: ClaimedRun) -> None:
        if self._interrupted:
            run.cancel()
            return
        run.retrying()
        self.submit([run])

    # -- preparing -----------------------------------------------------------------------------

    def _prepare(self, runs: list[ClaimedRun]) -> list[PreparedRun]:
        """Starts the attempts of runs (their names, `on_running` hooks, arguments); a run
        whose preparation fails, or whose task cannot travel, fails here."""
        prepared: list[PreparedRun] = []
        known: tuple[Any, TaskDefinition] | None = None  # the last function met
        for run, outcome in zip(runs, _core.prepare_runs(runs, self.place), strict=True):
            if not isinstance(outcome, tuple):
                self._after(run, _fail, outcome)
                continue
            function, args, kwargs, identity = outcome
            if known is None or known[0] is not function:
                definition = self._definition(run, function)
                if isinstance(definition, Exception):
                    self._after(run, _fail, definition)
                    continue
                known = (function, definition)
            prepared.append(PreparedRun(run, known[1], args, kwargs, identity))
        return prepared

    def _definition(self, run: ClaimedRun, function: Callable[..., Any]) -> TaskDefinition | Exception:
        """The definition of the run's task (made on first use), or why it cannot travel."""
        function_id = id(function)
        known = self._definitions.get(function_id)
        if known is None or known[0] is not function:
            # The task travels, not the function the engine calls: the worker builds that
            # again from the task (its options' wrappers then use the worker's modules).
            task = run.current[2]
            blob = cloudpickled(task)
            definition: TaskDefinition | Exception
            if isinstance(blob, Exception):
                definition = pickle.PicklingError(
                    f"Task {run.task_name!r}: its function could not be pickled to send to the cluster: "
                    f"{type(blob).__name__}: {blob}"
                )
            else:
                key = f"{run.task_name}-{uuid.uuid4().hex}"
                definition = TaskDefinition(
                    key, blob, getattr(task, "timeout_seconds", None), getattr(task, "retries", 0) or 0
                )
            known = (function, definition)
            self._definitions[function_id] = known
        return known[1]


def _complete(run: ClaimedRun, value: object) -> float | None:
    return run.complete(value)


def _fail(run: ClaimedRun, exception: BaseException) -> float | None:
    return run.fail(exception)


def timed_out_error(limit: float) -> BaseException:
    """The error of an attempt stopped at its time limit by the flow's process (as the
    limit raises it in a worker: the run ends TimedOut, or is retried)."""
    from ferroflow.task_engine import TaskRunTimeoutError

    error = TaskRunTimeoutError(f"Scope timed out after {limit} second(s).")
    error.timeout_seconds = limit
    return error
