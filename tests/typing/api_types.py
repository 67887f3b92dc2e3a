"""What a type checker sees of ferroflow's API: checked by mypy and basedpyright (strict)
in the test command, never run. Each `assert_type` is an inference a user relies on;
each `# type: ignore[...]` / `# pyright: ignore[...]` line is an error the checkers must
report (both are told to flag an ignore that is not needed, so a missing error fails).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any

from typing_extensions import assert_type

from ferroflow import Flow, State, Task, flow, task, unmapped
from ferroflow.futures import DoneAndNotDoneFutures, PrefectFuture, PrefectFutureList, as_completed, wait


@task
def add(x: int, y: int) -> int:
    return x + y


@task(retries=2, retry_delay_seconds=[1, 2], name="shout", tags=["io"])
def shout(text: str) -> str:
    return text.upper()


@task
async def fetch(url: str) -> bytes:
    await asyncio.sleep(0)
    return url.encode()


@flow
def pipeline(n: int) -> list[int]:
    return [n]


@flow(name="async-pipeline", log_prints=True)
async def async_pipeline(n: int) -> str:
    return str(n)


def task_objects() -> None:
    # Assignments, not `assert_type`: mypy's parameter specs carry the parameter names,
    # so `Task[[int, int], int]` is never the exact type of a decorated function.
    typed: Task[[int, int], int] = add
    typed = add.with_options(retries=3)
    shouting: Task[[str], str] = shout
    fetching: Task[[str], Coroutine[Any, Any, bytes]] = fetch
    wrong: Task[[str], int] = add  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    del typed, shouting, fetching, wrong


def direct_calls() -> None:
    assert_type(add(1, 2), int)
    assert_type(add(1, 2, return_state=True), State[int])
    assert_type(add(1, 2, return_state=False), int)
    assert_type(add(x=1, y=2, wait_for=[]), int)
    assert_type(shout("hi"), str)
    pending: Coroutine[Any, Any, bytes] = fetch("u")  # an async task's call: a coroutine
    pending.close()


def submits() -> None:
    future = add.submit(1, 2)
    assert_type(future, PrefectFuture[int])
    assert_type(future.result(), int)
    assert_type(future.result(timeout=1.0, raise_on_failure=False), int)
    assert_type(future.state, State[int])
    assert_type(add.submit(1, 2, return_state=True), State[int])
    assert_type(fetch.submit("u"), PrefectFuture[bytes])
    assert_type(fetch.submit("u").result(), bytes)


def maps() -> None:
    futures = add.map([1, 2], 5)
    assert_type(futures, PrefectFutureList[int])
    assert_type(futures[0], PrefectFuture[int])
    assert_type(futures.result(), list[int])
    assert_type(add.map([1, 2], unmapped(5)), PrefectFutureList[int])
    assert_type(add.map([1, 2], 5, return_state=True), list[State[int]])
    assert_type(fetch.map(["a", "b"]), PrefectFutureList[bytes])
    for each in futures:
        assert_type(each, PrefectFuture[int])


def waiting() -> None:
    futures = [add.submit(1, 2), add.submit(3, 4)]
    done = wait(futures)
    assert_type(done, DoneAndNotDoneFutures[PrefectFuture[int]])
    assert_type(done.done, set[PrefectFuture[int]])
    assert_type(as_completed(futures), Iterator[PrefectFuture[int]])
    assert_type(wait(add.map([1], 2)).not_done, set[PrefectFuture[int]])
    assert_type(list(as_completed(add.map([1], 2))), list[PrefectFuture[int]])


async def awaiting() -> None:
    assert_type(await add.submit(1, 2), int)
    assert_type(await add.map([1, 2], 5), list[int])
    assert_type(await fetch("u"), bytes)
    assert_type(await fetch("u", return_state=True), State[bytes])
    assert_type(await async_pipeline(1, return_state=True), State[str])
    assert_type(await async_pipeline(1), str)


def flows() -> None:
    typed: Flow[[int], list[int]] = pipeline
    typed = pipeline.with_options(name="other")
    awaited: Flow[[int], Coroutine[Any, Any, str]] = async_pipeline
    wrong: Flow[[int], int] = pipeline  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    del typed, awaited, wrong
    assert_type(pipeline(1), list[int])
    assert_type(pipeline(1, return_state=True), State[list[int]])
    pending: Coroutine[Any, Any, str] = async_pipeline(1)
    pending.close()


def wrong_arguments() -> None:
    # mypy reports a mismatch of every overload, naming the function's own signature.
    add(1, "2")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    add(1)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    add.submit("1", 2)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    shout(text=3)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    pipeline("n")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    add.result()  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]


@task(retries="two")  # type: ignore[call-overload, untyped-decorator]  # pyright: ignore[reportArgumentType]
def badly_configured(x: int) -> int:
    return x
