"""What the engine calls for each attempt of a task's run, built once per `Task`.

A task without run options is its own function: the engine calls it directly, and a
trivial run costs what the call costs. Options that act around the call (a cache
lookup before it, a time limit on it) wrap it in a function of this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def engine_function(task: Any) -> tuple[Callable[..., Any], str]:
    """The callable the engine calls with a run's arguments, and what calling it gives
    ("sync", "eager-coroutine" or "coroutine", see `body_kind`).

    A task with `timeout_seconds` gets its function put under that limit
    (`ferroflow._timeouts`), and a task that caches gets the cache lookup around that
    (`ferroflow._task_cache`): the limit covers the function only, and an attempt that
    runs out of time fails before anything is recorded."""
    func, body = task.fn, body_kind(task.fn)
    if task.timeout_seconds is not None:
        from ferroflow._timeouts import with_task_timeout

        func, body = with_task_timeout(task, func, body)
    from ferroflow._cache_options import caches

    if caches(task):
        from ferroflow._task_cache import cached_function

        func, body = cached_function(task, func, body)
    return func, body


# Bytecode that can suspend a coroutine: `await`, `async for`, `async with`.
_SUSPENDING_OPS = frozenset(
    {"GET_AWAITABLE", "SEND", "YIELD_VALUE", "GET_AITER", "GET_ANEXT", "BEFORE_ASYNC_WITH", "END_ASYNC_FOR"}
)


# Names whose use means the coroutine wants a running loop or task even without awaiting.
_LOOP_APIS = frozenset(
    {
        "get_running_loop",
        "get_event_loop",
        "current_task",
        "all_tasks",
        "create_task",
        "ensure_future",
        "run_coroutine_threadsafe",
        "call_soon",
        "call_later",
        "call_at",
        "run_in_executor",
        "get_current_task",
        "current_async_library",
    }
)


def body_kind(fn: Callable[..., Any]) -> str:
    """What calling `fn` gives, for the engine: a value ("sync"), a coroutine that cannot
    suspend and so runs to completion in one step ("eager-coroutine": a trivial async
    task costs what a sync one does), or one that may suspend, or asks for its loop or
    task, and runs on an event loop ("coroutine")."""
    import inspect

    if not inspect.iscoroutinefunction(fn):
        return "sync"
    code = getattr(inspect.unwrap(fn), "__code__", None)
    if code is None:
        return "coroutine"
    import dis

    if any(instruction.opname in _SUSPENDING_OPS for instruction in dis.get_instructions(code)):
        return "coroutine"
    if _LOOP_APIS.intersection(code.co_names):
        return "coroutine"  # it asks for its event loop or task: it gets a real one
    return "eager-coroutine"
