"""The parent side of `ProcessPoolTaskRunner`: warm worker processes, and the one reader
thread that ships claimed runs to them and reports their ends to the engine.

The engine claims every submitted and mapped run of the runner and hands them over in
batches (`RunnerEngine(..., executes_elsewhere=True)`); they wait here, `pending`, until
a worker has room. A worker gets a *chunk* of runs at a time, sized so that a chunk takes
about `CHUNK_SECONDS` by the function's measured run time (one run at first), and holds
at most `CHUNKS_IN_FLIGHT` chunks, so it never waits for the parent between chunks. A
task's function is cloudpickled once in the parent and sent once per worker; arguments
and results travel with pickle protocol 5.

The reader thread blocks in `multiprocessing.connection.wait` on the workers' pipes and
process sentinels, a wake-up pipe and the next retry's due time: it reads outcomes,
reports each end through the run (`complete`/`fail`/`crash`: the engine's report path,
with hooks and log lines, runs here in the parent), holds failed attempts for their
retry delay (no worker sleeps through one), replaces a worker that died (the run it
held ends Crashed, naming the exit code or signal) and refills workers.

Imported only when a `ProcessPoolTaskRunner` starts; it sits between `_bridge` and
`_task_runners` in the runtime's layers.
"""

from __future__ import annotations

import atexit
import heapq
import importlib
import itertools
import os
import pickle
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ferroflow import _core
from ferroflow import _process_worker as worker_side
from ferroflow._bridge import ClaimedRun, crash
from ferroflow._remote import timed_out_error
from ferroflow._worker_runs import Identities, cloudpickled, emit_records, identities_slice
from ferroflow.logging import get_logger
from ferroflow.utilities.text import safe_repr

#: A chunk aims at this much work: long enough that a message's cost is small beside it,
#: short enough that runs spread over every worker and results come back steadily.
CHUNK_SECONDS = 0.02
#: A chunk is not made shorter than this to share runs between workers: below it, a
#: message and its answer cost about what the runs do.
MIN_CHUNK_SECONDS = 0.002
#: Chunks a worker holds at once: the next one is there when it finishes one.
CHUNKS_IN_FLIGHT = 2
#: A chunk never holds more runs than this.
MAX_CHUNK = worker_side.MAX_CHUNK
#: How long a worker gets to exit by itself when the pool closes before it is terminated.
EXIT_GRACE = 5.0
#: How long past its `timeout_seconds` a run may hold its worker before the worker is
#: killed: the limit acts in the worker first (an alarm in its main thread); this stops a
#: run that blocks the alarm or sits in code that never returns to Python.
KILL_GRACE = 1.0

GUARD_HINT = (
    'a script that uses ProcessPoolTaskRunner must start its flow under `if __name__ == "__main__":` '
    "(worker processes are started with spawn, which imports the script again)"
)


@dataclass(slots=True)
class _Segment:
    """Consecutive runs of one task, prepared for their next attempt and shipped
    together (`_core.prepare_segments`): `runs[i]` is called with `calls[i]` (and
    `kwargs[i]`); what the worker knows of each run travels packed in `identities`."""

    runs: list[ClaimedRun]
    task_id: int
    #: Whether each run's only argument is its item (`task.map(xs)`): `calls` holds the
    #: items, not tuples of arguments.
    single: bool
    calls: list[Any]
    kwargs: list[dict[str, Any] | None] | None
    identities: Identities
    names: list[str] | None
    name: str
    seed: bytes

    def __len__(self) -> int:
        return len(self.runs)

    def described(self) -> tuple[Any, ...]:
        """The segment as a worker reads it (see `_process_worker`), but its arguments."""
        return (self.task_id, len(self), self.single, self.identities, self.names, self.name, self.seed)

    def piece(self, start: int, stop: int) -> _Segment:
        """The segment's runs from `start` to `stop`, as a segment of their own."""
        return _Segment(
            self.runs[start:stop],
            self.task_id,
            self.single,
            self.calls[start:stop],
            None if self.kwargs is None else self.kwargs[start:stop],
            identities_slice(self.identities, start, stop),
            None if self.names is None else self.names[start:stop],
            self.name,
            self.seed,
        )

    def without(self, positions: set[int]) -> list[_Segment]:
        """The segment's runs but those at `positions`, as the pieces between them."""
        pieces: list[_Segment] = []
        start = 0
        for position in sorted(positions):
            if position > start:
                pieces.append(self.piece(start, position))
            start = position + 1
        if start < len(self):
            pieces.append(self.piece(start, len(self)))
        return pieces


@dataclass(slots=True)
class _Handed:
    """Runs as the engine handed them over (or back from a retry delay), those before
    `start` taken already (a cursor: taking a chunk copies the chunk, not the rest)."""

    runs: list[ClaimedRun]
    start: int = 0

    def __len__(self) -> int:
        return len(self.runs) - self.start

    def take(self, count: int) -> list[ClaimedRun]:
        taken = self.runs[self.start : self.start + count]
        self.start += len(taken)
        return taken


#: What waits to be shipped: runs not prepared yet, and segments prepared but not shipped.
_Waiting = _Handed | _Segment


@dataclass(slots=True)
class _Chunk:
    """What a worker gets in one message: segments of runs, `key` naming it. While the
    worker executes the run at position `i` of the chunk (counting through its segments),
    its `current` holds `key * MAX_CHUNK + i`."""

    key: int
    segments: list[_Segment]

    def runs(self) -> list[ClaimedRun]:
        return [run for segment in self.segments for run in segment.runs]

    def run_key(self, position: int) -> int:
        return self.key * MAX_CHUNK + position


@dataclass
class _Worker:
    process: Any
    connection: Any
    #: Shared memory: the run key (see `_Chunk`) of the run the worker executes now (or `IDLE`).
    current: Any
    ready: bool = False
    #: Chunks sent and not answered yet, oldest first.
    in_flight: deque[_Chunk] = field(default_factory=deque)
    #: Tasks this worker has received.
    tasks: set[int] = field(default_factory=set)
    #: (when, run key, limit): the run under a time limit of `limit` seconds is killed
    #: with its worker if it still runs at `when` (monotonic).
    deadline: tuple[float, int, float] | None = None
    #: The run key of the run whose worker was killed for its time limit.
    killed_for: int | None = None


class ProcessPool:
    """The worker processes of one started `ProcessPoolTaskRunner` and their reader."""

    def __init__(
        self,
        max_workers: int,
        start_method: str,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
        nested_runner: Callable[[], Any],
    ) -> None:
        import multiprocessing

        self._context = multiprocessing.get_context(start_method)
        self._max_workers = max_workers
        #: Makes the task runner of runs that tasks in a worker call, submit or map.
        self._nested_runner = nested_runner
        #: The initializer and its arguments, cloudpickled once for every worker.
        self._initializer: bytes | Exception | None = (
            None if initializer is None else cloudpickled((initializer, initargs))
        )
        self._lock = threading.RLock()
        self._pending: deque[_Waiting] = deque()
        self._workers: list[_Worker] = []
        #: task id -> (the task, kept so its id stays its own; cloudpickled, or the error).
        self._tasks: dict[int, tuple[Any, bytes | Exception]] = {}
        #: task id -> measured seconds per run.
        self._run_seconds: dict[int, float] = {}
        #: task id -> its `timeout_seconds`, for tasks that have one.
        self._time_limits: dict[int, float] = {}
        #: Failed attempts waiting out their retry delay: (due, sequence, run).
        self._retries: list[tuple[float, int, ClaimedRun]] = []
        self._sequence = itertools.count()
        self._keys = itertools.count()
        #: The flow run the runs belong to, as a worker's run context shows it: (flow
        #: name, flow run id, flow run name, log_prints), or None outside flows. Set by
        #: each runner that takes the pool.
        self.flow_run: tuple[str, Any, str, bool] | None = None
        #: Why the pool cannot run anything (its workers cannot start), once known.
        self._broken: str | None = None
        self._closing = False
        self._closed = False
        self._wake_read, self._wake_write = os.pipe()
        self._reader: threading.Thread | None = None

    # -- what the runner calls -----------------------------------------------------------

    def submit(self, runs: list[ClaimedRun]) -> None:
        """Takes claimed runs (from an engine thread) and ships what workers have room for."""
        with self._lock:
            if self._broken is not None or self._closing:
                broken = self._broken or "the process pool has been shut down and executes no more runs"
            else:
                broken = None
                self._pending.append(_Handed(runs))
                if self._reader is None:
                    self._start_reader()
        if broken is not None:
            for run in runs:
                crash(run, RuntimeError(broken))
            return
        self._dispatch()

    def interrupt(self) -> None:
        """Ctrl-C: runs not shipped yet (and those waiting for a retry) end Cancelled; the
        workers are terminated, and the runs they held end Crashed."""
        with self._lock:
            waiting = self._take_waiting()
            waiting += [run for _, _, run in self._retries]
            self._retries.clear()
            self._closing = True
            workers, self._workers = self._workers, []
        for run in waiting:
            if not run.done:
                run.cancel()
        for worker in workers:
            worker.process.terminate()
        for worker in workers:
            worker.process.join(EXIT_GRACE)
            for chunk in worker.in_flight:
                for run in chunk.runs():
                    crash(run, KeyboardInterrupt("its worker process was terminated by an interrupt"))
        self._wake()

    @property
    def reusable(self) -> bool:
        """Whether another runner can use this pool: it was not interrupted or closed, its
        workers could start, and nothing of the last runner's is left in it."""
        with self._lock:
            busy = self._pending or self._retries or any(worker.in_flight for worker in self._workers)
            return not (self._closing or self._broken or busy)

    def close(self) -> None:
        """Stops the workers (each finishes what it holds) and the reader thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = self._closing = True
            workers, self._workers = self._workers, []
        for worker in workers:
            try:
                worker.connection.send_bytes(pickle.dumps(None, worker_side.PROTOCOL))
            except OSError:
                pass  # it is gone already
        for worker in workers:
            worker.process.join(EXIT_GRACE)
            if worker.process.exitcode is None:
                worker.process.kill()
                worker.process.join()
        self._wake()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join()
        for worker in workers:
            worker.connection.close()
        os.close(self._wake_read)
        os.close(self._wake_write)

    # -- workers -------------------------------------------------------------------------

    def _start_reader(self) -> None:
        if isinstance(self._initializer, Exception):
            error = self._initializer
            self._break(f"the process pool's initializer could not be pickled: {type(error).__name__}: {error}")
            return
        self._reader = threading.Thread(target=self._read, name="ferroflow-process-pool-reader", daemon=True)
        self._reader.start()

    def _start_workers(self) -> None:
        """Starts workers as the pending runs need them, up to `max_workers` (as
        ProcessPoolExecutor does): one run waits for one interpreter to start, not for
        `max_workers` of them starting at once on the same cores. Under the lock."""
        if self._reader is None or self._closing or self._broken is not None:
            return
        # Workers that can take a run soon: those starting, and the ready ones holding none.
        free = sum(1 for worker in self._workers if not worker.ready or not worker.in_flight)
        waiting = self._waiting_runs()
        started = False
        while len(self._workers) < self._max_workers and free < waiting:
            self._workers.append(self._spawn())
            free += 1
            started = True
        if started and threading.current_thread() is not self._reader:
            self._wake()  # the reader waits on the workers it knew: it must see the new ones

    def _spawn(self) -> _Worker:
        parent_end, child_end = self._context.Pipe()
        current = self._context.RawValue("q", worker_side.IDLE)
        context: Any = self._context  # (its stubs lack the start method's Process class)
        process: Any = context.Process(
            target=worker_side.serve,
            args=(child_end, current, self._initializer, self._nested_runner),
            name="ferroflow-process-pool-worker",
        )
        process.start()
        child_end.close()
        return _Worker(process, parent_end, current)

    def _wake(self) -> None:
        try:
            os.write(self._wake_write, b"x")
        except OSError:
            pass  # closed: the reader has stopped

    # -- what waits ----------------------------------------------------------------------

    def _waiting_runs(self) -> int:
        return sum(len(item) for item in self._pending)

    def _take_waiting(self) -> list[ClaimedRun]:
        """Every waiting run, taken out of `pending`. Under the lock."""
        runs = [
            run for item in self._pending for run in (item.runs if isinstance(item, _Segment) else item.take(len(item)))
        ]
        self._pending.clear()
        return runs

    def _take_segments(self, count: int) -> list[_Segment]:
        """Up to `count` runs from the front of `pending`, prepared (those not prepared
        yet in one call to the engine): runs whose preparation fails, or whose task cannot
        travel, fail here and are not among them. Under the lock."""
        segments: list[_Segment] = []
        fresh: list[ClaimedRun] = []
        while count > 0 and self._pending:
            item = self._pending[0]
            if isinstance(item, _Handed):
                taken = item.take(count)
                fresh += taken
                count -= len(taken)
            else:
                if len(item) > count:
                    self._pending[0] = item.piece(count, len(item))
                    item = item.piece(0, count)
                else:
                    self._pending.popleft()
                segments += self._prepared(fresh)
                fresh = []
                segments.append(item)
                count -= len(item)
            if self._pending and not self._pending[0]:
                self._pending.popleft()
        return segments + self._prepared(fresh)

    def _prepared(self, runs: list[ClaimedRun]) -> list[_Segment]:
        """Starts the attempts of runs (their names, `on_running` hooks, arguments)."""
        if not runs:
            return []
        prepared, failures = _core.prepare_segments(runs)
        for position, error in failures:
            self._report_failure(runs[position], error)
        segments: list[_Segment] = []
        for task, name, start, single, calls, kwargs, identities, names, seed in prepared:
            segment_runs = runs[start : start + len(calls)]
            task_id = self._ship(task)
            if isinstance(task_id, Exception):
                for run in segment_runs:
                    self._report_failure(run, task_id)
                continue
            segments.append(_Segment(segment_runs, task_id, single, calls, kwargs, identities, names, name, seed))
        return segments

    def _ship(self, task: Any) -> int | Exception:
        """The id under which `task` travels, cloudpickled on first use; or the error
        that fails its runs if it cannot travel."""
        task_id = id(task)
        known = self._tasks.get(task_id)
        if known is None or known[0] is not task:
            # The task travels, not the function the engine calls: the worker builds that
            # again from the task (its options' wrappers then use the worker's modules).
            known = (task, cloudpickled(task))
            self._tasks[task_id] = known
            self._run_seconds.pop(task_id, None)
            self._time_limits.pop(task_id, None)
            if getattr(task, "timeout_seconds", None) is not None:
                self._time_limits[task_id] = task.timeout_seconds
        if isinstance(known[1], Exception):
            return pickle.PicklingError(
                f"Task {task.name!r}: its function could not be pickled to send to a worker process: "
                f"{type(known[1]).__name__}: {known[1]}"
            )
        return task_id

    # -- shipping runs -------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Starts the workers `pending` needs, then gives every ready worker a chunk from
        it, and a second one to workers whose chunk is of fast runs (see `_holds_room`):
        breadth first, so that an idle worker is never passed over for a busy one."""
        with self._lock:
            self._start_workers()
            for depth in range(1, CHUNKS_IN_FLIGHT + 1):
                for worker in self._workers:
                    if not self._pending:
                        return
                    if worker.ready and len(worker.in_flight) < depth and self._holds_room(worker):
                        segments = self._take_chunk()
                        if segments:
                            self._send(worker, segments)

    def _holds_room(self, worker: _Worker) -> bool:
        """Whether the worker may take another chunk now: it holds none, or it holds
        runs measured fast (below `CHUNK_SECONDS` each), whose next chunk must be there
        when it finishes. A slow run's worker takes nothing more until it is done, so a
        run never waits behind a slow one while another worker frees up."""
        return all(
            self._run_seconds.get(chunk.segments[0].task_id, CHUNK_SECONDS) < CHUNK_SECONDS
            and chunk.segments[0].task_id not in self._time_limits
            for chunk in worker.in_flight
        )

    def _take_chunk(self) -> list[_Segment]:
        """The next chunk's segments from `pending`, sized by its first run's task (the
        first run is prepared alone, the others together)."""
        while self._pending:
            chunk = self._take_segments(1)
            if not chunk:
                continue  # it failed
            size = self._chunk_size(chunk[0].task_id)
            rest = self._take_segments(size - 1) if size > 1 else []
            for index, segment in enumerate(rest):
                if segment.task_id in self._time_limits:
                    # A run under a time limit starts a chunk of its own (see `_chunk_size`).
                    self._pending.extendleft(reversed(rest[index:]))
                    break
                chunk.append(segment)
            return chunk
        return []

    def _chunk_size(self, task_id: int) -> int:
        seconds = self._run_seconds.get(task_id)
        if seconds is None or task_id in self._time_limits:
            # Not measured yet: one run tells its cost. A run under a time limit travels
            # alone, to an idle worker, so that its limit is counted from its start.
            return 1
        seconds = max(seconds, 1e-7)
        # Never so big that one worker takes what the others could share, unless sharing
        # it would make chunks so short that their messages cost more than the runs.
        fair = -(-(self._waiting_runs() + 1) // (self._max_workers * CHUNKS_IN_FLIGHT))
        fair = max(fair, int(MIN_CHUNK_SECONDS / seconds))
        return max(1, min(int(CHUNK_SECONDS / seconds), fair, MAX_CHUNK))

    def _send(self, worker: _Worker, segments: list[_Segment]) -> None:
        """Sends a chunk as one message (pickled at once); runs whose arguments do not
        pickle fail, and the others go."""
        try:
            arguments = self._arguments(segments)
        except Exception:
            segments = [piece for segment in segments for piece in self._travelling(segment)]
            if not segments:
                return
            arguments = self._arguments(segments)
        definitions: list[tuple[int, bytes]] = []
        for task_id in {segment.task_id for segment in segments} - worker.tasks:
            blob = self._tasks[task_id][1]
            assert isinstance(blob, bytes)  # unpicklable tasks never reach a chunk
            definitions.append((task_id, blob))
            worker.tasks.add(task_id)
        chunk = _Chunk(next(self._keys), segments)
        described = [segment.described() for segment in segments]
        message = pickle.dumps((definitions, self.flow_run, chunk.key, described, arguments), worker_side.PROTOCOL)
        worker.in_flight.append(chunk)
        limit = self._time_limits.get(segments[0].task_id)
        if limit is not None:
            worker.deadline = (time.monotonic() + limit + KILL_GRACE, chunk.run_key(0), limit)
            self._wake()  # the reader must wait no longer than this deadline
        try:
            worker.connection.send_bytes(message)
        except OSError:
            pass  # it died: the reader sees its sentinel and deals with the chunk

    @staticmethod
    def _arguments(segments: list[_Segment]) -> bytes:
        # In a blob of their own: a worker that cannot unpickle them still reads which
        # runs they were for.
        return pickle.dumps([(segment.calls, segment.kwargs) for segment in segments], worker_side.PROTOCOL)

    def _travelling(self, segment: _Segment) -> list[_Segment]:
        """The segment's runs whose arguments pickle; the others fail, naming the argument."""
        stuck: set[int] = set()
        for position, run in enumerate(segment.runs):
            args = (segment.calls[position],) if segment.single else segment.calls[position]
            kwargs = None if segment.kwargs is None else segment.kwargs[position]
            try:
                pickle.dumps((args, kwargs), worker_side.PROTOCOL)
            except Exception as exc:
                stuck.add(position)
                error = pickle.PicklingError(
                    f"Task run {run.name!r}: {_unpicklable_argument(args, kwargs)} could not be "
                    f"pickled to send to a worker process: {type(exc).__name__}: {exc}"
                )
                self._report_failure(run, error)
        return segment.without(stuck) if stuck else [segment]

    # -- the reader thread ----------------------------------------------------------------

    def _read(self) -> None:
        """The reader thread. Should it ever fail, every run the pool holds ends Crashed
        with the error and the pool is broken: nothing may wait forever on it."""
        try:
            self._read_until_closed()
        except BaseException as exc:
            message = f"the process pool's reader thread failed: {type(exc).__name__}: {exc}"
            self._break(message)
            with self._lock:
                self._closing = True
                workers, self._workers = self._workers, []
                held = [run for _, _, run in self._retries]
                self._retries.clear()
            for worker in workers:
                worker.process.kill()
                held += [run for chunk in worker.in_flight for run in chunk.runs()]
            for run in held:
                crash(run, RuntimeError(message))
            raise

    def _read_until_closed(self) -> None:
        from multiprocessing.connection import wait

        while True:
            with self._lock:
                if self._closing and not self._workers:
                    return
                workers = list(self._workers)
                dues = [worker.deadline[0] for worker in workers if worker.deadline is not None]
                if self._retries:
                    dues.append(self._retries[0][0])
                due = min(dues, default=None)
            by_object: dict[Any, _Worker] = {}
            for worker in workers:
                by_object[worker.connection] = worker
                by_object[worker.process.sentinel] = worker
            timeout = None if due is None else max(0.0, due - time.monotonic())
            ready = wait([*by_object, self._wake_read], timeout)
            if self._wake_read in ready:
                os.read(self._wake_read, 4096)
            dead: list[_Worker] = []
            for obj in ready:
                owner = by_object.get(obj)
                if owner is None:
                    continue
                if obj is owner.connection:
                    if not self._receive(owner):
                        dead.append(owner)
                elif owner not in dead:
                    dead.append(owner)
            for worker in dead:
                self._died(worker)
            self._kill_overdue(workers)
            self._release_due_retries()
            self._dispatch()

    def _receive(self, worker: _Worker) -> bool:
        """Reads one message of the worker; False if it is gone."""
        try:
            raw = worker.connection.recv_bytes()
        except (EOFError, OSError):
            return False
        if not worker.ready:
            if raw == worker_side.READY:
                worker.ready = True
            else:
                _, (_, text, trace) = pickle.loads(raw)
                self._break(f"the process pool's initializer failed in a worker process: {text}\n{trace}")
            return True
        with self._lock:
            chunk = worker.in_flight.popleft()
            if worker.deadline is not None and worker.deadline[1] == chunk.run_key(0):
                worker.deadline = None  # the run under a time limit has ended
        outcomes: list[tuple[list[Any], list[tuple[int, int, Any]]]]
        records: list[dict[str, Any]]
        try:
            outcomes, elapsed, records = pickle.loads(raw)
        except Exception as exc:
            # (A class the worker knows and this process cannot import, say.)
            text = f"its outcome could not be unpickled in the parent process: {type(exc).__name__}: {exc}"
            outcomes = [worker_side.failed_outcome(len(segment), text) for segment in chunk.segments]
            elapsed, records = 0.0, []
        if elapsed:
            self._run_seconds[chunk.segments[0].task_id] = elapsed / sum(map(len, chunk.segments))
        emit_records(records)  # the runs' own log lines come before their ends
        for segment, (values, failures) in zip(chunk.segments, outcomes, strict=True):
            runs = segment.runs
            if failures:
                for position, kind, data in failures:
                    self._report(runs[position], kind, data)
                failed = {position for position, _, _ in failures}
                runs = [run for position, run in enumerate(runs) if position not in failed]
                values = [value for position, value in enumerate(values) if position not in failed]
            # One call to the engine ends every run that returned (hooks and lines included).
            for index, delay in _core.complete_runs(runs, values):
                self._after_attempt(runs[index], delay)
        return True

    def _report(self, run: ClaimedRun, kind: int, data: Any) -> None:
        """Reports an attempt that did not return a value (see `_process_worker`)."""
        if kind == worker_side.EXCEPTION:
            raised, text, trace = data
            exception: BaseException = (
                RuntimeError(f"{text} (the exception could not be pickled in the worker process)")
                if raised is None
                else raised
            )
            # A note (shown under the traceback from Python 3.11) keeps the worker's traceback.
            note = f"Raised in a worker process of ProcessPoolTaskRunner:\n{trace.rstrip()}"
            notes: list[str] = [*getattr(exception, "__notes__", ()), note]
            exception.__notes__ = notes  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]
            self._report_failure(run, exception)
        else:
            self._report_failure(run, pickle.PicklingError(f"Task run {run.name!r}: {data}"))

    def _report_failure(self, run: ClaimedRun, exception: BaseException) -> None:
        try:
            delay = run.fail(exception)
        except Exception as exc:
            crash(run, exc)
            return
        self._after_attempt(run, delay)

    def _after_attempt(self, run: ClaimedRun, delay: float | None) -> None:
        """A failed attempt with retries left waits here, then goes back to pending."""
        if delay is None:
            return
        with self._lock:
            heapq.heappush(self._retries, (time.monotonic() + delay, next(self._sequence), run))
        self._wake()

    def _release_due_retries(self) -> None:
        now = time.monotonic()
        due: list[ClaimedRun] = []
        with self._lock:
            while self._retries and self._retries[0][0] <= now:
                due.append(heapq.heappop(self._retries)[2])
        for run in due:
            run.retrying()
        if due:
            with self._lock:
                self._pending.append(_Handed(due))

    def _kill_overdue(self, workers: list[_Worker]) -> None:
        """Kills the workers whose run under a time limit is past it (and its grace): the
        run ends TimedOut when the reader sees the worker die, and a fresh worker starts."""
        now = time.monotonic()
        for worker in workers:
            deadline = worker.deadline
            if deadline is not None and deadline[0] <= now and worker.killed_for is None:
                if worker.current.value == deadline[1]:
                    worker.killed_for = deadline[1]
                    worker.process.kill()
                else:
                    worker.deadline = None  # it ended meanwhile; its outcome is on the way

    def _died(self, worker: _Worker) -> None:
        """A worker process ended: the run it held ends Crashed (TimedOut, if it was
        killed for its time limit), the rest of its chunks go back to pending, where the
        next dispatch starts a fresh worker for them."""
        process = worker.process
        process.join()
        # What it sent before it died comes first (outcomes, or its initializer's error).
        try:
            while worker.connection.poll() and self._receive(worker):
                pass
        except OSError:
            pass
        with self._lock:
            if worker not in self._workers:
                return  # the pool closed it
            self._workers.remove(worker)
            chunks = list(worker.in_flight)
            worker.in_flight.clear()
            held: int = worker.current.value
        worker.connection.close()
        reason = _exit_reason(process.exitcode)
        if not worker.ready:
            self._break(f"a worker process of the process pool exited while starting ({reason}); {GUARD_HINT}")
            for chunk in chunks:
                for run in chunk.runs():
                    crash(run, RuntimeError(self._broken or reason))
            return
        unstarted: list[_Segment] = []
        for chunk in chunks:
            offset = 0
            for segment in chunk.segments:
                position = held - chunk.run_key(offset)
                if not 0 <= position < len(segment):
                    unstarted.append(segment)
                else:
                    run = segment.runs[position]
                    if held == worker.killed_for and worker.deadline is not None:
                        self._report_failure(run, timed_out_error(worker.deadline[2]))
                    else:
                        crash(run, RuntimeError(f"Task run {run.name!r}: its worker process died ({reason})"))
                    unstarted += segment.without({position})
                offset += len(segment)
        with self._lock:
            # The reader's next dispatch starts a replacement if runs are waiting.
            self._pending.extendleft(reversed(unstarted))

    def _break(self, message: str) -> None:
        """No worker can start: every waiting run, and every run handed over from now on,
        ends Crashed with `message`."""
        with self._lock:
            if self._broken is not None:
                return  # the first cause is the one to tell
            self._broken = message
        get_logger("task_runner.processpool").error(message)
        with self._lock:
            waiting = self._take_waiting()
        for run in waiting:
            crash(run, RuntimeError(message))


# -- warm pools between runners ------------------------------------------------------------
#
# A flow run uses a fresh duplicate of its flow's runner: so that the next flow run does
# not spawn its workers again, a stopped runner leaves its pool here, idle, and the next
# runner with an equal configuration takes it. Idle pools live until the interpreter
# exits (their workers hold nothing of finished runs but the functions they received).

_registry_lock = threading.Lock()
_idle: list[tuple[Any, ProcessPool]] = []
_live: weakref.WeakSet[ProcessPool] = weakref.WeakSet()


def acquire(configuration: Any, make: Callable[[], ProcessPool]) -> ProcessPool:
    """An idle pool made for an equal `configuration`, else a new one."""
    with _registry_lock:
        for index, (known, pool) in enumerate(_idle):
            if known == configuration:
                del _idle[index]
                return pool
    pool = make()
    _live.add(pool)
    return pool


def release(configuration: Any, pool: ProcessPool) -> None:
    """A stopped runner's pool: kept warm for the next equal runner, unless it cannot be
    used again (interrupted, or its workers could not start)."""
    if not pool.reusable:
        pool.close()
        return
    with _registry_lock:
        if all(known != configuration for known, _ in _idle):
            _idle.append((configuration, pool))
            return
    pool.close()  # one warm pool per configuration is enough


def _close_all_at_exit() -> None:
    """At exit no worker outlives the parent: idle pools and pools still in use close
    (registered after `multiprocessing.util`, this runs before its exit hook, which
    would wait for the workers forever)."""
    with _registry_lock:
        _idle.clear()
        pools = list(_live)
    for pool in pools:
        pool.close()


# `multiprocessing.util` registers its exit hook, which joins live children, when it is
# first imported: ours, registered after it, runs before it.
importlib.import_module("multiprocessing.util")
atexit.register(_close_all_at_exit)


def _unpicklable_argument(args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> str:
    """Names the first argument that does not pickle."""
    for position, value in enumerate(args):
        if not _pickles(value):
            return f"its argument at position {position} ({safe_repr(value)})"
    for name, value in (kwargs or {}).items():
        if not _pickles(value):
            return f"its argument {name!r} ({safe_repr(value)})"
    return "its arguments"


def _pickles(value: Any) -> bool:
    try:
        pickle.dumps(value, worker_side.PROTOCOL)
    except Exception:
        return False
    return True


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        import signal

        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name}"
    return f"exit code {exitcode}"
