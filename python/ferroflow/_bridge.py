"""The bridge to `ferroflow._core`: the one place where Python operates an engine.

Every started task runner has one `RunnerEngine`: the flow run's single source of truth
for its runs (dependencies, states, retries, futures, waiting). A runner only configures
it (how many worker threads; whether a submitted run executes at once in the submitting
thread) and says where the runs execute that the engine hands over instead of running
them on its threads: the engine *claims* such runs and passes them, a batch at a time, to
the runner's `execute` callable; the runner reports each end through the run object
(`run.start()` gives the call, then `run.complete(value)`, `run.fail(exception)`,
`run.cancel()` or `run.crash(exception)`). Coroutine runs travel this way (to an event
loop); a runner made with `executes_elsewhere` gets every submitted and mapped run this
way (a process pool: `run.prepare()` gives the function and arguments to ship), and
bounds its own concurrency. Direct calls execute in their caller's thread either way.

The engine calls `RunnerEngine.hand_over` with each batch of claimed runs (one call per
batch, from an engine thread).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ferroflow import _core
from ferroflow._prints import enable_print_capture
from ferroflow.context import FlowRunContext
from ferroflow.logging import get_logger
from ferroflow.utilities.text import safe_repr

if TYPE_CHECKING:
    from ferroflow._arguments import MapCall

__all__ = [
    "ClaimedRun",
    "RunnerEngine",
    "after_fork_in_child",
    "begin_exit",
    "crash",
]

#: A run the engine has claimed and handed over to execute elsewhere; it stays Running in
#: the engine until one of its ending methods is called.
ClaimedRun = _core.AsyncRun

#: Where a batch of claimed runs goes: a runner's `_execute`.
Execute = Callable[[list[ClaimedRun]], None]

class RunnerEngine:
    """One started runner's engine, and every operation a runner, a task or a flow run
    performs on it."""

    __slots__ = ("core", "context", "sequential", "_execute", "__weakref__")

    def __init__(
        self,
        workers: int,
        context: FlowRunContext | None,
        execute: Execute,
        *,
        sequential: bool = False,
        release_unread: bool = False,
        executes_elsewhere: bool = False,
    ) -> None:
        """`release_unread`: free a run's value as soon as nothing can read it (a runner
        used outside flows lives long; a flow run's engine goes with the flow run).
        `executes_elsewhere`: every submitted and mapped run goes to `execute`, not only
        coroutines, and none counts against `workers` (the runner bounds its own)."""
        import uuid  # here, not at import: `import ferroflow` stays fast

        self.core = _core.Engine(
            workers, context, uuid.uuid4().bytes, self.hand_over, release_unread, executes_elsewhere
        )
        self.context = context
        #: Whether a submitted run executes at once, in the submitting thread (no workers).
        self.sequential = sequential
        self._execute = execute
        if workers:
            # Tasks print from several threads now: each print must reach its stream in
            # one write, so concurrent lines never merge.
            enable_print_capture()

    # -- registering runs ------------------------------------------------------------

    def submit(
        self, spec: _core.TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any], wait_for: Iterable[Any] | None
    ) -> _core.PrefectConcurrentFuture[Any]:
        future = self.core.submit(spec, args, kwargs or None, wait_for)
        if self.sequential:
            future.wait()  # an engine without workers runs it here, now
        return future

    def map(
        self, spec: _core.TaskSpec, call: MapCall, wait_for: Iterable[Any] | None
    ) -> _core.PrefectFutureList[Any]:
        futures = self.core.map(spec, call.args, call.kwargs or None, call.slots, call.iterables, wait_for)
        if self.sequential:
            futures.wait()
        return futures

    def call(
        self,
        spec: _core.TaskSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        wait_for: Iterable[Any] | None,
        bare_name: bool,
    ) -> _core.PrefectConcurrentFuture[Any]:
        """A direct call: the run executes in the calling thread, now."""
        return self.core.call(spec, args, kwargs or None, wait_for, bare_name)

    def claim_call(
        self,
        spec: _core.TaskSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        wait_for: Iterable[Any] | None,
        bare_name: bool,
    ) -> ClaimedRun:
        """A direct call of a coroutine task: the caller drives the claimed run."""
        return self.core.claim_call(spec, args, kwargs or None, wait_for, bare_name)

    # -- the runs' ends --------------------------------------------------------------

    def hand_over(self, runs: list[ClaimedRun]) -> None:
        """Gives claimed runs to the runner; if that fails, they end Crashed with the error
        (nothing may stay Running)."""
        try:
            self._execute(runs)
        except BaseException as exc:
            for run in runs:
                if not run.done:
                    crash(run, exc)

    def progress(self) -> tuple[int, int, int, int]:
        """(registered, done, failed, running) task runs, from counters the engine keeps
        anyway: what the progress line shows."""
        return self.core.progress()

    def wait_all(self) -> None:
        """Blocks until every run registered so far has ended."""
        self.core.wait_idle()

    @property
    def idle(self) -> bool:
        return self.core.unfinished == 0

    @property
    def runs(self) -> int:
        return self.core.runs

    def cancel_pending(self) -> int:
        """Ends every run that has not started Cancelled; returns how many."""
        return self.core.cancel_pending()

    def shutdown(self) -> None:
        self.core.shutdown()


def crash(run: ClaimedRun, exc: BaseException) -> None:
    """Ends a claimed run Crashed with `exc`: it could not be handed over or driven."""
    try:
        run.crash(exc)
    except BaseException as error:  # it ended meanwhile: say so, never raise here
        get_logger().error(f"Could not end a task run Crashed after {safe_repr(exc)}: {safe_repr(error)}")


def begin_exit() -> None:
    """The interpreter exits: every run registered from now on is cancelled, with its
    logged line (the bindings stop every engine from their own exit hook, after ours)."""
    _core.begin_exit()


def after_fork_in_child() -> None:
    """In a forked child: the parent's engine threads do not exist here."""
    _core.after_fork_in_child()
