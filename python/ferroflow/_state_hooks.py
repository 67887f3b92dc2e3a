"""State hooks: functions a user attaches to a flow or task, called when one of its runs
enters a state (Prefect's `on_completion`, `on_failure`, `on_crashed`, `on_cancellation`,
`on_running`), with Prefect's log lines.

A hook is called as `hook(owner, run, state)`: `(flow, flow_run, state)` for a flow,
`(task, task_run, state)` for a task. An `async def` hook is run to completion: awaited
on the run's own loop by `acall_hooks`, or on a loop of its own by `call_hooks`. A hook
that raises an `Exception` is logged with its traceback and changes nothing else: the
run keeps its state and its value, and the next hooks still run. (A `BaseException`,
such as Ctrl-C, propagates.)

This module sits with `states`, below the run layers: the logger is handed in.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ferroflow.context import carry_run, current_async_run

if TYPE_CHECKING:
    from ferroflow.logging import RunLogger
    from ferroflow.states import State

__all__ = ["Hook", "acall_hooks", "call_hooks", "checked_hooks", "hook_name", "is_awaitable", "run_to_completion"]

T = TypeVar("T")

#: `hook(flow_or_task, run, state)`; it may return an awaitable.
Hook = Callable[[Any, Any, Any], Any]


def hook_name(hook: Hook) -> str:
    """The name a hook is logged by (Prefect's): its `__name__`, a partial's function's, or
    its class name."""
    name = getattr(hook, "__name__", None)
    if isinstance(name, str):
        return name
    if isinstance(hook, functools.partial):
        return hook_name(hook.func)
    return type(hook).__name__


def checked_hooks(owner: str, option: str, hooks: Iterable[Hook] | None, decorator: str) -> list[Hook]:
    """The hooks given for `option` as a new list, each checked to be callable: Prefect's
    TypeErrors (with the example of `@{decorator}(...)`), naming `owner` first."""
    if hooks is None:
        return []
    advice = (
        f"Please provide a list of hooks to '{option}':\n\n"
        f"@{decorator}({option}=[hook1, hook2])\ndef my_{decorator}():\n\tpass"
    )
    try:
        checked = list(hooks)
    except TypeError:
        raise TypeError(
            f"{owner}: Expected iterable for '{option}'; got {type(hooks).__name__} instead. {advice}"
        ) from None
    for hook in checked:
        if not callable(hook):
            raise TypeError(f"{owner}: Expected callables in '{option}'; got {type(hook).__name__} instead. {advice}")
    return checked


@contextmanager
def _reported(hook: Hook, state: State[Any], logger: RunLogger) -> Generator[None, None, None]:
    """Logs a hook's start and end; an Exception it raises is logged, not propagated."""
    name = hook_name(hook)
    logger.info(f"Running hook {name!r} in response to entering state {state.name!r}")
    try:
        yield
    except Exception:
        logger.error(f"An error was encountered while running hook {name!r}", exc_info=True)
    else:
        logger.info(f"Hook {name!r} finished running successfully")


def call_hooks(hooks: Iterable[Hook], owner: Any, run: Any, state: State[Any], logger: RunLogger) -> None:
    """Calls each hook in order, in this thread; an async hook runs to completion on a
    loop of its own."""
    for hook in hooks:
        with _reported(hook, state, logger):
            result = hook(owner, run, state)
            if is_awaitable(result):
                run_to_completion(result)


async def acall_hooks(hooks: Iterable[Hook], owner: Any, run: Any, state: State[Any], logger: RunLogger) -> None:
    """Calls each hook in order; an async hook is awaited on the calling loop (an async
    flow's own), so other work on that loop goes on meanwhile."""
    for hook in hooks:
        with _reported(hook, state, logger):
            result = hook(owner, run, state)
            if isinstance(result, Coroutine):
                await result


def is_awaitable(value: Any) -> bool:
    import inspect  # here: only a hook or condition that returned something needs it

    return inspect.isawaitable(value)


def run_to_completion(awaitable: Awaitable[T]) -> T:
    """Runs what an async hook or retry condition returned to its end, from the calling
    thread: on a loop of its own; or, where a loop already runs in this thread (a
    coroutine run's, an async flow's, a sync flow called from async code) and cannot be
    re-entered, on a helper thread that carries the current run and the `contextvars`
    along (so `get_run_logger()` and the run contexts work inside), while this thread
    waits."""
    import asyncio  # only for async hooks: `import ferroflow` stays fast

    async def awaited() -> T:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(awaited())
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    context = contextvars.copy_context()
    carried = carry_run()
    if carried is not None:  # a run the engine executes on this thread is not seen on another
        context.run(current_async_run.set, carried)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ferroflow-hook") as helper:
        return helper.submit(context.run, asyncio.run, awaited()).result()
