"""Stub of ferroflow's compiled module (rust/ferroflow-py)."""

from typing import Any, Callable, Iterable, Iterator, Sequence, final, overload

from typing_extensions import Self
from uuid import UUID

from ferroflow.states import State

__version__: str
__all__ = [
    "TaskSpec",
    "Engine",
    "Completions",
    "PrefectFutureListIterator",
    "PrefectConcurrentFuture",
    "PrefectFutureList",
    "current_run",
    "after_fork_in_child",
    "contains_futures",
    "__version__",
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
    ) -> Self: ...
    @property
    def name(self) -> str: ...

@final
class PrefectConcurrentFuture:
    """A task run's future: a handle on a run in the engine."""

    @property
    def task_run_id(self) -> UUID: ...
    @property
    def state(self) -> State: ...
    def wait(self, timeout: float | None = None) -> None: ...
    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any: ...
    def add_done_callback(self, fn: Callable[[PrefectConcurrentFuture], object]) -> None: ...
    def __hash__(self) -> int: ...

@final
class PrefectFutureList(Sequence[PrefectConcurrentFuture]):
    """The futures of a `.map`: a view over a range of runs."""

    def __new__(cls, futures: Iterable[PrefectConcurrentFuture] | None = None) -> Self: ...
    def __len__(self) -> int: ...
    @overload
    def __getitem__(self, index: int, /) -> PrefectConcurrentFuture: ...
    @overload
    def __getitem__(self, index: slice, /) -> list[PrefectConcurrentFuture]: ...
    def __iter__(self) -> Iterator[PrefectConcurrentFuture]: ...
    def __add__(self, other: Iterable[Any], /) -> list[Any]: ...
    def __radd__(self, other: Iterable[Any], /) -> list[Any]: ...
    def wait(self, timeout: float | None = None) -> None: ...
    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[Any]: ...

@final
class PrefectFutureListIterator(Iterator[PrefectConcurrentFuture]):
    def __next__(self) -> PrefectConcurrentFuture: ...

@final
class Completions:
    """Positions of futures in the order they finish."""

    def __new__(cls, futures: Sequence[PrefectConcurrentFuture]) -> Self: ...
    def next(self, timeout: float | None = None) -> int | None: ...
    @property
    def remaining(self) -> int: ...

@final
class Engine:
    """One task runner's engine: an arena of runs and a pool of worker threads."""

    def __new__(cls, max_workers: int, context: Any, seed: bytes) -> Self: ...
    def submit(
        self, spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None, wait_for: Iterable[Any] | None = None
    ) -> PrefectConcurrentFuture: ...
    def call(
        self,
        spec: TaskSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None = None,
        wait_for: Iterable[Any] | None = None,
        bare_name: bool = False,
    ) -> PrefectConcurrentFuture: ...
    def map(
        self,
        spec: TaskSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        mapped: Sequence[int | str],
        iterables: Sequence[list[Any] | tuple[Any, ...] | range],
        wait_for: Iterable[Any] | None = None,
    ) -> PrefectFutureList: ...
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
    @property
    def context(self) -> Any: ...

def current_run() -> tuple[PrefectConcurrentFuture, str, Any, Any] | None: ...
def contains_futures(obj: object) -> bool: ...
def after_fork_in_child() -> None: ...
