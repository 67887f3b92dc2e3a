"""Futures of task runs, and the functions that wait on several (Prefect's `prefect.futures`).

`PrefectConcurrentFuture` and `PrefectFutureList` are implemented in Rust: a future is a
handle on a run in the engine; its state is read from memory and every wait releases
the GIL. The abstract classes are kept so that type hints and `isinstance` checks port.
"""

from __future__ import annotations

import abc
import collections.abc
import time
from collections.abc import Generator, Iterable, Iterator
from types import GenericAlias
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar, cast

from ferroflow._core import Completions, PrefectConcurrentFuture, PrefectFutureList, replace_futures

if TYPE_CHECKING:
    from ferroflow.states import State

__all__ = [
    "DoneAndNotDoneFutures",
    "PrefectConcurrentFuture",
    "PrefectFuture",
    "PrefectFutureList",
    "PrefectTaskRunFuture",
    "PrefectWrappedFuture",
    "as_completed",
    "resolve_futures_to_results",
    "resolve_futures_to_states",
    "wait",
]


R = TypeVar("R")  # the run's result
F = TypeVar("F")  # the wrapped future's type


class PrefectFuture(abc.ABC, Generic[R]):
    """A task run's result, to come. Generic over the result, as Prefect's
    (`PrefectFuture[int]`); the thread-pool future is registered as a subclass."""

    @property
    @abc.abstractmethod
    def task_run_id(self) -> Any: ...

    @property
    @abc.abstractmethod
    def state(self) -> State[R]: ...

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> None: ...

    @abc.abstractmethod
    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R: ...

    @abc.abstractmethod
    def add_done_callback(self, fn: Any) -> None: ...

    if TYPE_CHECKING:
        # ferroflow's futures can be awaited (`await add.submit(1, 2)` is the result);
        # declared for the type checkers only, so Prefect's abstract class is unchanged.
        def __await__(self) -> Generator[Any, None, R]: ...


class PrefectTaskRunFuture(PrefectFuture[R]):
    """A future of a task run (as opposed to a flow run)."""


class PrefectWrappedFuture(PrefectTaskRunFuture[R], Generic[R, F]):
    """A future that wraps another runner's future (Prefect's base of the concurrent one)."""


# What `wait` and `as_completed` give back. Bound to the class itself, not to its name
# in a string: a string bound is compiled at import, which costs a millisecond.
AnyFuture = TypeVar("AnyFuture", bound=PrefectFuture[Any])

for _abc in (PrefectFuture, PrefectTaskRunFuture, PrefectWrappedFuture):
    _abc.register(PrefectConcurrentFuture)
# Not a `list` subclass as in Prefect: a map's future list is a view over its runs, so a
# million-item map does not create a million future objects. It is a Sequence.
# (typeshed does not declare `register` on `Sequence`, an ABC at run time)
collections.abc.Sequence.register(PrefectFutureList)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]


if TYPE_CHECKING:

    class DoneAndNotDoneFutures(NamedTuple, Generic[AnyFuture]):
        done: set[AnyFuture]
        not_done: set[AnyFuture]

else:
    # A generic NamedTuple needs 3.11 at run time: on 3.10 the plain one, subscriptable
    # (`DoneAndNotDoneFutures[PrefectFuture[int]]`) like Prefect's.
    class DoneAndNotDoneFutures(NamedTuple):
        done: set
        not_done: set

    DoneAndNotDoneFutures.__class_getitem__ = classmethod(GenericAlias)


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be non-negative, got {timeout}")


def wait(futures: Iterable[AnyFuture], timeout: float | None = None) -> DoneAndNotDoneFutures[AnyFuture]:
    """Waits for the futures; returns which finished and which did not by `timeout`.
    Never raises on timeout."""
    _check_timeout(timeout)
    unique = list(dict.fromkeys(futures))
    if timeout is None:
        for future in unique:
            future.wait()
        return DoneAndNotDoneFutures(set(unique), set())
    done = {f for f in unique if f.state.is_final()}
    pending = [f for f in unique if f not in done]
    if pending:
        completions = Completions(cast("list[PrefectConcurrentFuture[Any]]", pending))
        deadline = time.monotonic() + timeout
        while completions.remaining:
            position = completions.next(max(0.0, deadline - time.monotonic()))
            if position is None:
                break
            done.add(pending[position])
    return DoneAndNotDoneFutures(done, {f for f in unique if f not in done})


class _AsCompletedTimeout(TimeoutError):
    """Raised by `as_completed` when futures are unfinished at its deadline."""


def as_completed(futures: Iterable[AnyFuture], timeout: float | None = None) -> Iterator[AnyFuture]:
    """Yields the futures as they finish; those already final first."""
    _check_timeout(timeout)
    unique = list(dict.fromkeys(futures))
    pending: list[AnyFuture] = []
    for future in unique:
        if future.state.is_final():
            yield future
        else:
            pending.append(future)
    if not pending:
        return
    completions = Completions(cast("list[PrefectConcurrentFuture[Any]]", pending))
    deadline = None if timeout is None else time.monotonic() + timeout
    while completions.remaining:
        position = completions.next(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if position is None:
            raise _AsCompletedTimeout(f"{completions.remaining} (of {len(unique)}) futures unfinished")
        yield pending[position]


def _final_state(future: PrefectConcurrentFuture[Any]) -> Any:
    future.wait()
    return future.state


def resolve_futures_to_states(expr: Any) -> Any:
    """A copy of `expr` with every future waited for and replaced by its final State."""
    # The engine's one argument walk: a flow returning a million plain results pays no
    # walk in Python; cycles and shared sub-structures are copied once, keeping their shape.
    return replace_futures(expr, _final_state)


def resolve_futures_to_results(expr: Any) -> Any:
    """A copy of `expr` with every future waited for and replaced by its result."""

    def result(future: PrefectConcurrentFuture[Any]) -> Any:
        state = _final_state(future)
        if not state.is_completed():
            raise Exception("At least one result did not complete successfully")
        return state.result()

    return replace_futures(expr, result)
