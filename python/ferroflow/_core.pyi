"""Stub of ferroflow's compiled module (rust/ferroflow-py)."""

from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any, TypeVar, final, overload
from uuid import UUID

from typing_extensions import Self

from ferroflow.futures import PrefectFuture, PrefectWrappedFuture
from ferroflow.states import State

_R = TypeVar("_R")
_T = TypeVar("_T")

__version__: str
__all__ = [
    "AsyncRun",
    "Completions",
    "Engine",
    "PrefectConcurrentFuture",
    "PrefectFutureList",
    "PrefectFutureListIterator",
    "RemoteResult",
    "RunArguments",
    "TaskSpec",
    "__version__",
    "after_fork_in_child",
    "begin_exit",
    "complete_runs",
    "contains_futures",
    "current_run",
    "futures_in",
    "prepare_runs",
    "prepare_segments",
    "replace_futures",
    "shut_down_engines_at_exit",
]

@final
class TaskSpec:
    """A task's options that every run reads, built once per `Task`."""

    def __new__(
        cls,
        task: Any,
        func: Callable[..., Any],
        name: str,
        retries: int,
        delays: Sequence[float],
        custom_name: str | Callable[..., str] | None,
        body: str = "sync",
        *,
        on_running: list[Callable[..., Any]] | None = None,
        on_completion: list[Callable[..., Any]] | None = None,
        on_failure: list[Callable[..., Any]] | None = None,
        retry_condition: Callable[..., Any] | None = None,
        retry_jitter_factor: float = 0.0,
    ) -> Self: ...
    @property
    def name(self) -> str: ...

@final
class RunArguments:
    """A run's arguments, resolved when asked (`TaskRunContext.parameters`)."""

    def resolved(self) -> tuple[tuple[Any, ...], dict[str, Any] | None]: ...

#: `(future, run_name, task, flow_run_context, run_count, arguments)`: a run as code
#: inside it finds it (`current_run()`, `AsyncRun.current`).
_CurrentRun = tuple[PrefectConcurrentFuture[Any], str, Any, Any, int, RunArguments]

# Registered as a virtual subclass of `PrefectWrappedFuture` (futures.py): to a type
# checker it is one, so a `PrefectConcurrentFuture[int]` is a `PrefectFuture[int]`.
@final
class PrefectConcurrentFuture(PrefectWrappedFuture[_R, Any]):
    """A task run's future: a handle on a run in the engine."""

    @property
    def task_run_id(self) -> UUID: ...
    @property
    def state(self) -> State[_R]: ...
    def wait(self, timeout: float | None = None) -> None: ...
    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> _R: ...
    def add_done_callback(self, fn: Callable[[PrefectConcurrentFuture[_R]], object]) -> None: ...
    def done(self) -> bool: ...
    def __await__(self) -> Generator[Any, None, _R]: ...
    @classmethod
    def __class_getitem__(cls, item: Any) -> Any: ...
    def _cancel_if_pending(self) -> bool: ...
    @property
    def _run_index(self) -> int: ...
    def __hash__(self) -> int: ...

@final
class PrefectFutureList(Sequence[PrefectFuture[_R]]):
    """The futures of a `.map`: a view over a range of runs."""

    def __new__(cls, futures: Iterable[PrefectFuture[_R]] | None = None) -> Self: ...
    def __len__(self) -> int: ...
    @overload
    def __getitem__(self, index: int, /) -> PrefectFuture[_R]: ...
    @overload
    def __getitem__(self, index: slice, /) -> list[PrefectFuture[_R]]: ...
    def __iter__(self) -> Iterator[PrefectFuture[_R]]: ...
    def __add__(self, other: Iterable[Any], /) -> list[Any]: ...
    def __radd__(self, other: Iterable[Any], /) -> list[Any]: ...
    def __await__(self) -> Generator[Any, None, list[_R]]: ...
    @classmethod
    def __class_getitem__(cls, item: Any) -> Any: ...
    def _when_all_done(self, fn: Callable[[], object]) -> None: ...
    def wait(self, timeout: float | None = None) -> None: ...
    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[_R]: ...

@final
class PrefectFutureListIterator(Iterator[PrefectConcurrentFuture[Any]]):
    def __next__(self) -> PrefectConcurrentFuture[Any]: ...

@final
class Completions:
    """Positions of futures in the order they finish."""

    def __new__(cls, futures: Sequence[PrefectConcurrentFuture[Any]]) -> Self: ...
    def next(self, timeout: float | None = None) -> int | None: ...
    @property
    def remaining(self) -> int: ...

@final
class AsyncRun:
    """A run claimed from the engine and executed elsewhere: a coroutine on an event
    loop, or any run of a runner that executes every run (a process pool)."""

    def start(self) -> Any: ...
    def prepare(self) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any] | None]: ...
    def complete(self, value: Any) -> float | None: ...
    def fail(self, exception: BaseException) -> float | None: ...
    def retrying(self) -> None: ...
    def cancel(self) -> None: ...
    def crash(self, exception: BaseException) -> None: ...
    def suspend(self) -> bool: ...
    def resume(self) -> bool: ...
    @property
    def done(self) -> bool: ...
    @property
    def future(self) -> PrefectConcurrentFuture[Any]: ...
    @property
    def context(self) -> Any: ...
    @property
    def current(self) -> _CurrentRun: ...
    @property
    def name(self) -> str: ...
    @property
    def task_name(self) -> str: ...
    @property
    def identity(self) -> tuple[str, int, bytes]: ...

@final
class RemoteResult:
    """A run's value kept on a cluster: `handle` there, `place` (the cluster's identity,
    compared with `==`), and `fetch([handle, ...])`, which brings values here (each once,
    many in one call)."""

    def __new__(cls, handle: object, place: object, fetch: Callable[[list[Any]], Sequence[object]]) -> Self: ...
    @property
    def handle(self) -> Any: ...
    @property
    def place(self) -> Any: ...
    @property
    def fetched_here(self) -> bool: ...
    def value(self) -> Any: ...

@final
class Engine:
    """One task runner's engine: an arena of runs and a pool of worker threads."""

    def __new__(
        cls,
        max_workers: int,
        context: Any,
        seed: bytes,
        execute: Callable[[list[AsyncRun]], object],
        release_unread: bool = False,
        executes_elsewhere: bool = False,
    ) -> Self: ...
    def submit(
        self,
        spec: TaskSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None = None,
        wait_for: Iterable[Any] | None = None,
    ) -> PrefectConcurrentFuture[Any]: ...
    def call(
        self,
        spec: TaskSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None = None,
        wait_for: Iterable[Any] | None = None,
        bare_name: bool = False,
    ) -> PrefectConcurrentFuture[Any]: ...
    def map(
        self,
        spec: TaskSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        mapped: Sequence[int | str],
        iterables: Sequence[list[Any] | tuple[Any, ...] | range],
        wait_for: Iterable[Any] | None = None,
    ) -> PrefectFutureList[Any]: ...
    def claim_call(
        self,
        spec: TaskSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None = None,
        wait_for: Iterable[Any] | None = None,
        bare_name: bool = False,
    ) -> AsyncRun: ...
    def wait_idle(self, timeout: float | None = None) -> bool: ...
    def cancel_pending(self) -> int: ...
    def shutdown(self) -> None: ...
    @property
    def max_workers(self) -> int: ...
    @property
    def workers(self) -> int: ...
    @property
    def unfinished(self) -> int: ...
    @property
    def runs(self) -> int: ...
    def progress(self) -> tuple[int, int, int, int]: ...  # (registered, done, failed, running)
    @property
    def context(self) -> Any: ...

def current_run() -> _CurrentRun | None: ...
def contains_futures(obj: object) -> bool: ...
def futures_in(obj: object) -> list[PrefectConcurrentFuture[Any]]: ...
def replace_futures(obj: _T, replace: Callable[[PrefectConcurrentFuture[Any]], Any]) -> _T: ...
def begin_exit() -> None: ...
def shut_down_engines_at_exit() -> None: ...
def after_fork_in_child() -> None: ...

_PreparedRun = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any] | None, tuple[str, int, bytes]]

def prepare_runs(runs: list[AsyncRun], place: object = None) -> list[_PreparedRun | BaseException]: ...
def complete_runs(runs: list[AsyncRun], values: list[Any]) -> list[tuple[int, float]]: ...

# (task, task name, start, single, calls, kwargs, identities, custom names, run id seed)
_Segment = tuple[
    Any, str, int, bool, list[Any], list[dict[str, Any] | None] | None, _Identities, list[str] | None, bytes
]
# (first name number, first run index, run count) of runs that follow one another, or
# three little-endian u64 per run
_Identities = tuple[int, int, int] | bytes

def prepare_segments(runs: list[AsyncRun]) -> tuple[list[_Segment], list[tuple[int, BaseException]]]: ...
