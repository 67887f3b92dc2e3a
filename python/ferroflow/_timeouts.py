"""Time limits that stop the work: `timeout_seconds` of a task attempt or a flow run.

How a call is stopped depends on the thread it runs in:

- The main thread (of the main interpreter, where SIGALRM exists): an interval timer
  (`signal.setitimer`) interrupts the call in place at its next bytecode, and a blocking
  `time.sleep`, socket read or `select` at once, as Prefect does. Limits nest (a flow's
  around a task's): one timer, armed for the earliest. A SIGALRM handler and timer in
  place before (a user's watchdog, pytest-timeout) are kept: that timer still rings on
  time, through its handler, and both are put back when the outermost call ends.
- Any other thread (an engine worker running a submitted or mapped run, a subflow's
  thread): the call runs on a *lane*, a daemon thread of a small pool reused between
  calls, while the calling thread waits for it with the deadline, the GIL released. At
  the deadline the caller stops waiting whatever the lane is blocked in: the attempt
  fails on time, and no engine thread, which holds a batch of other runs, is ever the
  one stuck. The lane is told to stop at its next bytecode (`PyThreadState_SetAsyncExc`)
  and leaves the pool; the next call gets a fresh lane. (Prefect injects the exception
  into its worker thread itself, which stays blocked: its issues 15760 and 18542.)
- A coroutine: cancelled at its next `await` (an anyio cancel scope: asyncio or trio).

The run a call belongs to follows it into its lane (`ferroflow.context.carry_run`), so
`get_run_logger()`, run contexts, `print` capture and nested `.submit()` work there.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import copy_context
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ferroflow.context import FlowRunContext, carry_run, current_async_run
from ferroflow.task_engine import TaskRunTimeoutError

if TYPE_CHECKING:
    from types import FrameType, ModuleType

__all__ = [
    "TimeoutInterrupt",
    "await_with_timeout",
    "call_with_timeout",
    "interrupt_lane_waits",
    "with_task_timeout",
]

T = TypeVar("T")


class TimeoutInterrupt(BaseException):
    """Raised inside a call whose time limit has passed, to stop it.

    A BaseException, so that the call's own `except Exception:` does not swallow it;
    the caller of the timed call gets the timeout's error instead (its context is this
    interrupt, whose traceback shows where the call was stopped)."""

    #: The limit that passed, when SIGALRM raised it (a lane's stop has none).
    deadline: _Deadline | None = None

    def __init__(self, *args: object) -> None:
        # A lane is stopped with the class alone, which Python makes without arguments.
        super().__init__(*(args or ("the time limit was reached",)))


def with_task_timeout(task: Any, func: Callable[..., Any], body_kind: str) -> tuple[Callable[..., Any], str]:
    """What the engine calls for each attempt of a task with `timeout_seconds`: `func`
    under that limit, and its body kind (see `ferroflow._task_body.body_kind`).

    An attempt over the limit raises `TaskRunTimeoutError` (Prefect's message), which
    fails it and is retried while retries remain. A sync body stays "sync"; an async one
    is awaited in an anyio cancel scope, so it is a "coroutine" (it needs its loop)."""
    seconds: float = task.timeout_seconds

    def timeout_error() -> TaskRunTimeoutError:
        error = TaskRunTimeoutError(f"Scope timed out after {seconds} second(s).")
        error.timeout_seconds = seconds
        return error

    if body_kind == "sync":

        def call_timed(*args: Any, **kwargs: Any) -> Any:
            return call_with_timeout(func, args, kwargs, seconds, timeout_error)

        return call_timed, "sync"

    async def await_timed(*args: Any, **kwargs: Any) -> Any:
        return await await_with_timeout(func(*args, **kwargs), seconds, timeout_error)

    return await_timed, "coroutine"


def call_with_timeout(
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    seconds: float,
    error: Callable[[], BaseException],
) -> T:
    """`fn(*args, **kwargs)`, given `seconds`: raises `error()` if it has not returned by
    then. In the main thread the call is interrupted where it is (SIGALRM); in any other
    thread it runs on a lane and is abandoned at the deadline, told to stop (module doc)."""
    if threading.get_ident() == threading.main_thread().ident:
        import signal  # here: only a timed call in the main thread needs it

        if hasattr(signal, "setitimer"):
            return _call_under_alarm(signal, fn, args, kwargs, seconds, error)
    return _call_in_lane(fn, args, kwargs, seconds, error)


async def await_with_timeout(awaitable: Awaitable[T], seconds: float, error: Callable[[], BaseException]) -> T:
    """`await awaitable`, cancelled at its next `await` after `seconds`: then raises
    `error()`. Also when the awaitable caught the cancellation and returned anyway."""
    import anyio  # here: only timed coroutines need it

    with anyio.move_on_after(seconds) as scope:
        value = await awaitable
        if not scope.cancel_called:
            return value
    raise error()


# -- the main thread: SIGALRM ----------------------------------------------------------


class _Deadline:
    """One timed call's limit. `ended` once its call has returned (the handler leaves it
    alone from then on), `fired` once the handler has interrupted it."""

    __slots__ = ("at", "seconds", "fired", "ended")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.fired = False
        self.ended = False


class _Alarm:
    """SIGALRM while timed calls run in the main thread: what was there before is kept,
    to be put back, and its timer (if one ran) still rings on time, through its handler.
    """

    __slots__ = ("stack", "previous_handler", "previous_timer", "owner")

    def __init__(self) -> None:
        #: The timed calls under way, outermost first.
        self.stack: list[_Deadline] = []
        #: The SIGALRM handler in place before the outermost timed call.
        self.previous_handler: Any = None
        #: The timer armed before it, if any: (when it rings, its interval or 0).
        self.previous_timer: tuple[float, float] | None = None
        #: The thread that took SIGALRM (the main thread; after a fork, maybe gone).
        self.owner = 0


_alarm = _Alarm()
#: The shortest timer `setitimer` is asked for (0 would disarm it), and the longest (a
#: limit of years is re-armed when it wakes; setitimer refuses some larger values).
_SOONEST, _LONGEST = 1e-6, 1e8


def _call_under_alarm(
    signal: ModuleType,
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    seconds: float,
    error: Callable[[], BaseException],
) -> T:
    depth = len(_alarm.stack)
    if depth == 0:
        remaining, interval = signal.getitimer(signal.ITIMER_REAL)
        try:
            _alarm.previous_handler = signal.signal(signal.SIGALRM, _on_alarm)
        except ValueError:  # the main thread of a sub-interpreter: its signals are not ours
            return _call_in_lane(fn, args, kwargs, seconds, error)
        _alarm.previous_timer = (time.monotonic() + remaining, interval) if remaining else None
        _alarm.owner = threading.get_ident()
    deadline = _Deadline(seconds)
    _alarm.stack.append(deadline)
    try:
        try:
            _arm(signal)
            try:
                value = fn(*args, **kwargs)
            finally:
                deadline.ended = True
        except TimeoutInterrupt as interrupt:
            if interrupt.deadline is not deadline:
                raise  # an outer call's limit: it unwinds to that call
            raise error()  # noqa: B904  # its context is the interrupt: where the call was stopped
        if deadline.fired:
            raise error()  # the call caught the interrupt and went on: its result came too late
        return value
    finally:
        # Every deadline from this depth goes, also one an interrupt left behind.
        del _alarm.stack[depth:]
        if depth:
            _arm(signal)
        else:
            _give_back(signal)


def _give_back(signal: ModuleType) -> None:
    """Puts back the handler and the timer that were there before the outermost call."""
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, _alarm.previous_handler)
    timer, _alarm.previous_timer, _alarm.previous_handler = _alarm.previous_timer, None, None
    if timer is not None:
        signal.setitimer(signal.ITIMER_REAL, max(timer[0] - time.monotonic(), _SOONEST), timer[1])


def _arm(signal: ModuleType) -> None:
    """Sets the timer for the earliest of the running deadlines and the previous timer
    (or disarms it)."""
    times = [deadline.at for deadline in _alarm.stack if not (deadline.fired or deadline.ended)]
    if _alarm.previous_timer is not None:
        times.append(_alarm.previous_timer[0])
    delay = min(max(min(times) - time.monotonic(), _SOONEST), _LONGEST) if times else 0
    signal.setitimer(signal.ITIMER_REAL, delay)


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    """Rings the previous timer if its time has come (its handler runs, and may raise),
    then interrupts the outermost timed call whose deadline has come: unwinding it also
    unwinds the calls inside it. A signal for neither re-arms the timer."""
    import signal

    now = time.monotonic()
    timer = _alarm.previous_timer
    if timer is not None and timer[0] <= now + _SOONEST:
        at, interval = timer
        _alarm.previous_timer = (at + interval, interval) if interval else None
        _arm(signal)
        _ring_previous(signal, signum, frame)
    for deadline in _alarm.stack:
        if not (deadline.fired or deadline.ended) and deadline.at <= now + _SOONEST:
            deadline.fired = True
            interrupt = TimeoutInterrupt(f"time limit of {deadline.seconds} s reached")
            interrupt.deadline = deadline
            raise interrupt
    _arm(signal)


def _ring_previous(signal: ModuleType, signum: int, frame: FrameType | None) -> None:
    """What the previous timer's signal would have done: its Python handler is called;
    the default action (the process ends) is taken; an ignored signal does nothing."""
    handler = _alarm.previous_handler
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGALRM)


# -- other threads: lanes ----------------------------------------------------------------

#: How long an idle lane waits for its next call before its thread ends.
_LANE_IDLE_SECONDS = 2.0

_RUNNING, _DONE, _ABANDONED = "running", "done", "abandoned"


class _Job:
    """One call given to a lane. Its state changes once, under its lock: to done (by the
    lane, which then releases `done`) or to abandoned (by its waiter, at the deadline)."""

    __slots__ = ("call", "done", "lock", "state", "outcome", "lane_ident", "waiting_on", "interrupted")

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.done = threading.Lock()
        self.done.acquire()
        self.lock = threading.Lock()
        self.state = _RUNNING
        self.outcome: tuple[bool, Any] = (False, None)  # (returned, its value or exception)
        self.lane_ident = 0
        #: The job this job's call waits for, when the call runs a timed call of its own.
        self.waiting_on: _Job | None = None
        #: Abandoned by Ctrl-C in its flow run (`interrupt_lane_waits`), not at its deadline.
        self.interrupted = False

    def run_here(self) -> bool:
        """Runs the call on this lane; returns whether the lane may take another."""
        _lane_job.job = self
        try:
            self.outcome = (True, self.call())
        except BaseException as exc:  # handed to the waiter, which raises it
            self.outcome = (False, exc)
        finally:
            _lane_job.job = None
        with self.lock:
            if self.state is _ABANDONED:
                _send_to_thread(threading.get_ident(), None)  # a stop not yet delivered: none now
                return False
            self.state = _DONE
        self.done.release()
        return True

    def result(self) -> Any:
        returned, value = self.outcome
        if returned:
            return value
        raise value


class _Lane:
    """A daemon thread that runs timed calls for threads that wait with a deadline."""

    __slots__ = ("wake", "job", "ident")

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()
        self.job: _Job | None = None
        thread = threading.Thread(target=self._serve, name=f"ferroflow-timeout-lane-{next(_lane_numbers)}", daemon=True)
        thread.start()
        self.ident = thread.ident or 0
        # A daemon, so a stuck lane never holds up the exit; but threads the call starts
        # are ordinary ones, as they would be from an engine worker (which is made
        # non-daemon for the same reason): they are joined at exit, not killed.
        setattr(thread, "_daemonic", False)  # noqa: B010  # a private attribute, deliberately

    def give(self, job: _Job) -> None:
        job.lane_ident = self.ident
        self.job = job
        self.wake.release()

    def _serve(self) -> None:
        try:
            while True:
                if not self.wake.acquire(True, _LANE_IDLE_SECONDS):
                    with _lanes_lock:
                        if self in _idle_lanes:  # nobody took it meanwhile: it ends
                            _idle_lanes.remove(self)
                            return
                    self.wake.acquire()  # taken just as it gave up: its call is on the way
                job, self.job = self.job, None
                if job is None or not job.run_here():
                    return
        except TimeoutInterrupt:
            return  # the stop of an abandoned call, delivered after the call had ended


_lane_numbers = itertools.count(1)
_lanes_lock = threading.Lock()
_idle_lanes: list[_Lane] = []
#: The lane calls being waited for, with the flow run each belongs to (None: outside flows).
_waits: dict[_Job, FlowRunContext | None] = {}
#: The job the current thread runs, when it is a lane.
_lane_job = threading.local()


def _call_in_lane(
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    seconds: float,
    error: Callable[[], BaseException],
) -> T:
    context = copy_context()  # the caller's context variables, in a context of the lane's own
    carried = carry_run()
    job = _Job(lambda: context.run(_call_as_run, carried, fn, args, kwargs))
    flow_run_context = FlowRunContext.get()
    with _lanes_lock:
        lane = _idle_lanes.pop() if _idle_lanes else None
        _waits[job] = flow_run_context
    parent: _Job | None = getattr(_lane_job, "job", None)
    if parent is not None:
        parent.waiting_on = job
    try:
        if lane is None:
            lane = _Lane()
        lane.give(job)
        finished = job.done.acquire(True, min(seconds, threading.TIMEOUT_MAX))
    except BaseException:  # Ctrl-C while the main thread waits: the call is left, told to stop
        _abandon(job)
        raise
    finally:
        if parent is not None:
            parent.waiting_on = None
        with _lanes_lock:
            del _waits[job]
    if not finished:
        if _abandon(job):
            raise error()
    elif job.state is _ABANDONED:  # woken before the end: stopped from outside
        raise KeyboardInterrupt if job.interrupted else TimeoutInterrupt()
    with _lanes_lock:
        _idle_lanes.append(lane)
    return cast("T", job.result())


def _call_as_run(carried: Any, fn: Callable[..., T], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> T:
    """In the lane, in its copy of the caller's context: the caller's run is the current
    one (the engine knows runs by the thread executing them, and this is another)."""
    if carried is not None:
        current_async_run.set(carried)
    return fn(*args, **kwargs)


def _abandon(job: _Job, wake_waiter: bool = False) -> bool:
    """Gives up on a job: it is told to stop at its next bytecode, and so is the timed
    call it waits for, if any, whose waiting lane is woken (`wake_waiter`) to meet its
    own stop. Returns False if the job had ended meanwhile."""
    with job.lock:
        if job.state is _DONE:
            return False
        if job.state is _ABANDONED:
            return True
        job.state = _ABANDONED
        _send_to_thread(job.lane_ident, TimeoutInterrupt)
    if wake_waiter:
        job.done.release()
    inner = job.waiting_on
    if inner is not None:
        _abandon(inner, wake_waiter=True)
    return True


def interrupt_lane_waits(flow_run_context: FlowRunContext | None) -> None:
    """Ctrl-C in a flow run (its task runner's `_interrupt`; None: the runner outside
    flows): every thread waiting for a lane call of that flow run stops waiting at once
    and raises KeyboardInterrupt there, so the run ends Crashed as an interrupted run in
    the main thread does, and the lanes are told to stop. A timed run does not hold the
    interrupt up until its deadline."""
    with _lanes_lock:
        jobs = [job for job, owner in _waits.items() if owner is flow_run_context]
    for job in jobs:
        job.interrupted = True
        _abandon(job, wake_waiter=True)


def _send_to_thread(ident: int, exception: type[BaseException] | None) -> None:
    """Raises `exception` in thread `ident` at its next bytecode (None: withdraws one not
    yet raised). A thread blocked in a C call meets it when the call returns."""
    import ctypes  # here: only a call that overran needs it

    stop = None if exception is None else ctypes.py_object(exception)
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), stop)


def _after_fork_in_child() -> None:
    """The child has none of the parent's lanes, and their lock may have been held by a
    thread that is gone. A child inherits no timer: the forking thread's own timed calls
    get theirs re-armed; timed calls of another thread are not in the child at all."""
    global _lanes_lock
    _lanes_lock = threading.Lock()
    _idle_lanes.clear()
    _waits.clear()
    if not _alarm.stack:
        return
    import signal

    _alarm.previous_timer = None  # it was the parent's
    if _alarm.owner == threading.get_ident():
        _arm(signal)
    else:
        _alarm.stack.clear()
        _give_back(signal)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
