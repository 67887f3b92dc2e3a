"""`@task` and `Task`: Prefect's task API, executed by ferroflow's engine."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Generic, Literal, NoReturn, ParamSpec, Protocol, TypeVar, overload

from ferroflow import _core
from ferroflow._arguments import Signature, bound_copy, split_map
from ferroflow._task_body import engine_function
from ferroflow._task_runners import current_runner
from ferroflow.context import FlowRunContext
from ferroflow.utilities.annotations import NotSet
from ferroflow.utilities.callables import copy_metadata, rewrap_method, unwrap_method

if TYPE_CHECKING:
    import datetime

    from ferroflow._state_hooks import Hook
    from ferroflow.futures import PrefectFuture, PrefectFutureList
    from ferroflow.states import State

__all__ = ["Task", "exponential_backoff", "task", "task_input_hash"]

P = ParamSpec("P")  # the task's parameters
R = TypeVar("R", covariant=True)  # what it returns (a task returning int is one returning object)
T = TypeVar("T")  # what an async task's coroutine returns
H = TypeVar("H", bound=Callable[..., Any])  # a state hook, given back by the registrars

#: Most retry delays a task may list (Prefect's bound).
MAX_RETRY_DELAYS = 50

# Options of Prefect's @task that need its server or its transactions, with their
# defaults. Passing one with another value raises NotImplementedError naming the option
# and the reason: an option that silently does nothing would be worse than none.
_OUT_OF_SCOPE = {
    "on_commit": (None, "transaction hooks need Prefect's transactions, which ferroflow does not have"),
    "on_rollback": (None, "transaction hooks need Prefect's transactions, which ferroflow does not have"),
    "asset_deps": (None, "assets are recorded by Prefect's server"),
}


def _reject_unsupported(owner: str, options: dict[str, Any]) -> None:
    for option, value in options.items():
        if option not in _OUT_OF_SCOPE:
            raise TypeError(f"{owner}() got an unexpected keyword argument {option!r}")
        default, reason = _OUT_OF_SCOPE[option]
        if value is not default:
            raise NotImplementedError(f"{owner}: option {option!r} is not supported by ferroflow: {reason}")


def needs_server(owner: str, feature: str) -> NotImplementedError:
    """The error for a Prefect feature that needs its server or its task workers: ferroflow
    runs flows in-process, with neither."""
    return NotImplementedError(
        f"{owner}: {feature} needs a Prefect server and its workers; ferroflow runs flows in-process, without one"
    )


def _timeout(value: Any, owner: str) -> float | None:
    """`timeout_seconds` checked: None, or a finite number of seconds > 0; 0 means no
    limit, as in Prefect (which keeps only a truthy value)."""
    if value is None or (value == 0 and not isinstance(value, bool)):
        return None
    import math
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: timeout_seconds must be a number of seconds, got {type(value).__name__}: {value!r}")
    seconds = float(value)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{owner}: timeout_seconds must be a finite number > 0, got {value!r}")
    return seconds


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str | None:
    """Prefect's legacy `cache_key_fn`: a hash of the task's name and bytecode and of the
    run's arguments (None if they cannot be hashed), the same in every process."""
    from ferroflow.cache_policies import task_input_hash as input_hash

    return input_hash(context, arguments)


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """Retry delays `backoff_factor * 2**i` for each retry (Prefect's helper)."""

    def retry_backoff_callable(retries: int) -> list[float]:
        retries = min(retries, MAX_RETRY_DELAYS)
        return [backoff_factor * max(0, 2**r) for r in range(retries)]

    return retry_backoff_callable


def _retries(retries: Any, owner: str) -> int:
    """`retries` checked: None (0) or an int >= 0."""
    if retries is None:
        return 0
    import operator

    try:
        if isinstance(retries, bool):
            raise TypeError
        count = operator.index(retries)
    except TypeError:
        raise TypeError(f"{owner}: retries must be an int, got {type(retries).__name__}: {retries!r}") from None
    if count < 0:
        raise ValueError(f"{owner}: retries must be >= 0, got {count}")
    return count


_DELAY_KINDS = "a number of seconds, a list of them, or a callable returning a list"


def _delay(value: Any, owner: str) -> float:
    """One retry delay checked: a real number of seconds, finite and >= 0."""
    import math
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: retry_delay_seconds must be {_DELAY_KINDS}; got {type(value).__name__}: {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{owner}: retry_delay_seconds must be finite and >= 0, got {value!r}")
    return seconds


def _delays(retries: int, retry_delay_seconds: Any, owner: str) -> list[float]:
    """The retry delays as a list, the last one repeating (callables expanded now, as
    Prefect); every delay checked, so a string is an error rather than its characters."""
    if retry_delay_seconds is None:
        return []
    if callable(retry_delay_seconds):
        retry_delay_seconds = retry_delay_seconds(retries)
    if isinstance(retry_delay_seconds, (str, bytes, bytearray)):
        raise TypeError(
            f"{owner}: retry_delay_seconds must be {_DELAY_KINDS}; got {type(retry_delay_seconds).__name__}: "
            f"{retry_delay_seconds!r}"
        )
    try:
        items = iter(retry_delay_seconds)
    except TypeError:
        return [_delay(retry_delay_seconds, owner)]  # a number, or a TypeError naming the option
    delays = [_delay(d, owner) for d in items]
    if len(delays) > MAX_RETRY_DELAYS:
        raise ValueError(f"{owner}: can not configure more than {MAX_RETRY_DELAYS} retry delays per task.")
    return delays


def _check_simple_options(owner: str, **options: Any) -> None:
    """`description` and `version` strings, `log_prints` True, False or None (as Flow checks them)."""
    for option in ("description", "version"):
        value = options[option]
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{owner}: {option} must be a string, got {type(value).__name__} {value!r}")
    log_prints = options["log_prints"]
    if not (log_prints is None or isinstance(log_prints, bool)):
        raise TypeError(f"{owner}: log_prints must be True or False, got {type(log_prints).__name__} {log_prints!r}")


def _tags(tags: Any, owner: str) -> set[str]:
    """`tags` checked: an iterable of strings (a lone string is not split into letters)."""
    if tags is None:
        return set()
    if isinstance(tags, (str, bytes)):
        raise TypeError(f"{owner}: tags must be an iterable of strings, got a single {type(tags).__name__}: {tags!r}")
    try:
        tag_set = set(tags)
    except TypeError:
        raise TypeError(f"{owner}: tags must be an iterable of strings, got {type(tags).__name__}: {tags!r}") from None
    for tag in tag_set:
        if not isinstance(tag, str):
            raise TypeError(f"{owner}: tags must be strings, got {type(tag).__name__}: {tag!r}")
    return tag_set


def _hook_and_retry_options(
    owner: str,
    retry_jitter_factor: Any,
    retry_condition_fn: Any,
    on_completion: Any,
    on_failure: Any,
    on_running: Any,
) -> tuple[float | None, Callable[..., Any] | None, list[Hook], list[Hook], list[Hook]]:
    """Prefect's checks of these options, naming the task: `retry_jitter_factor` a number
    >= 0 (or None), `retry_condition_fn` a callable (or None), each hook option an
    iterable of callables (each made a new list)."""
    from ferroflow._state_hooks import checked_hooks  # here: `import ferroflow` stays fast

    if retry_jitter_factor is not None:
        import math
        import numbers

        if isinstance(retry_jitter_factor, bool) or not isinstance(retry_jitter_factor, numbers.Real):
            raise TypeError(
                f"{owner}: retry_jitter_factor must be a number, got "
                f"{type(retry_jitter_factor).__name__}: {retry_jitter_factor!r}"
            )
        if not math.isfinite(retry_jitter_factor) or retry_jitter_factor < 0:
            raise ValueError(
                f"{owner}: `retry_jitter_factor` must be a finite number >= 0, got {retry_jitter_factor!r}"
            )
    if retry_condition_fn is not None and not callable(retry_condition_fn):
        raise TypeError(
            f"{owner}: Expected `retry_condition_fn` to be callable, got {type(retry_condition_fn).__name__} instead."
        )
    return (
        None if retry_jitter_factor is None else float(retry_jitter_factor),
        retry_condition_fn,
        checked_hooks(owner, "on_completion", on_completion, "task"),
        checked_hooks(owner, "on_failure", on_failure, "task"),
        checked_hooks(owner, "on_running", on_running, "task"),
    )


# The options `with_options` copies unless given, by the attribute that holds each.
_INHERITED_OPTIONS = {
    "cache_policy": "cache_policy",
    "cache_key_fn": "cache_key_fn",
    "cache_expiration": "cache_expiration",
    "refresh_cache": "refresh_cache",
    "persist_result": "persist_result",
    "result_storage": "result_storage",
    "result_serializer": "result_serializer",
    "result_storage_key": "result_storage_key",
    "cache_result_in_memory": "cache_result_in_memory",
    "timeout_seconds": "timeout_seconds",
    "retry_jitter_factor": "retry_jitter_factor",
    "retry_condition_fn": "retry_condition_fn",
    "on_completion": "on_completion_hooks",
    "on_failure": "on_failure_hooks",
    "on_running": "on_running_hooks",
    "viz_return_value": "viz_return_value",
}


class Task(Generic[P, R]):
    """A function run as a task: called directly it runs at once, `.submit()` and
    `.map()` hand it to the flow's task runner and return futures.

    Generic over the function's parameters and return type, as Prefect's
    (`Task[[int], str]`). It carries the function's `__name__`, `__qualname__`,
    `__doc__`, `__module__` and `__wrapped__`. Methods, classmethods and staticmethods
    can be tasks (`@task` above `@classmethod`); they bind through `__get__`."""

    def __init__(
        self,
        fn: Callable[P, R] | classmethod[Any, P, R] | staticmethod[P, R],
        name: str | None = None,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        version: str | None = None,
        task_run_name: str | Callable[..., str] | None = None,
        retries: int | None = None,
        retry_delay_seconds: float | Iterable[float] | Callable[[int], Iterable[float]] | None = None,
        log_prints: bool | None = False,
        cache_policy: Any = NotSet,
        cache_key_fn: Callable[[Any, dict[str, Any]], str | None] | None = None,
        cache_expiration: datetime.timedelta | None = None,
        refresh_cache: bool | None = None,
        persist_result: bool | None = None,
        result_storage: Any = None,
        result_serializer: Any = None,
        result_storage_key: str | None = None,
        cache_result_in_memory: bool = True,
        timeout_seconds: float | None = None,
        retry_jitter_factor: float | None = None,
        retry_condition_fn: Callable[..., bool] | None = None,
        on_completion: list[Callable[..., Any]] | None = None,
        on_failure: list[Callable[..., Any]] | None = None,
        on_running: list[Callable[..., Any]] | None = None,
        viz_return_value: Any = None,
        **options: Any,
    ) -> None:
        fn, self._method_kind = unwrap_method(fn)
        if not callable(fn):
            raise TypeError(f"@task expects a function, got {type(fn).__name__}: {fn!r}")
        copy_metadata(self, fn)  # first: the task's own attributes below win
        self.fn: Callable[..., R] = fn
        import inspect  # here, not at import: `import ferroflow` stays fast

        fn_name = getattr(fn, "__name__", type(fn).__name__)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Task {fn_name!r}: name must be a string, got {type(name).__name__}: {name!r}")
        self.name: str = name or fn_name
        owner = f"Task {self.name!r}"
        _reject_unsupported(owner, options)
        _check_simple_options(owner, description=description, version=version, log_prints=log_prints)
        self.description = description if description is not None else inspect.getdoc(fn)
        self.tags = _tags(tags, owner)  # a run adds the `tags(...)` blocks around its call
        self.version = version
        if task_run_name is not None and not (isinstance(task_run_name, str) or callable(task_run_name)):
            raise TypeError(
                f"{owner}: task_run_name must be a string or a callable, got {type(task_run_name).__name__}"
            )
        self.task_run_name = task_run_name
        self.retries = _retries(retries, owner)
        self._delays = _delays(self.retries, retry_delay_seconds, owner)
        # As Prefect shows it: a number stays a number, a list or a callable becomes a list.
        if retry_delay_seconds is None:
            self.retry_delay_seconds: float | list[float] = 0
        elif isinstance(retry_delay_seconds, (int, float)):
            self.retry_delay_seconds = retry_delay_seconds
        else:
            self.retry_delay_seconds = list(self._delays)
        self.log_prints = log_prints
        self.timeout_seconds = _timeout(timeout_seconds, owner)
        (
            self.retry_jitter_factor,
            self.retry_condition_fn,
            self.on_completion_hooks,
            self.on_failure_hooks,
            self.on_running_hooks,
        ) = _hook_and_retry_options(
            owner, retry_jitter_factor, retry_condition_fn, on_completion, on_failure, on_running
        )
        self.viz_return_value = viz_return_value
        # Caching and results, checked and resolved by Prefect's rules; `ferroflow._task_body` reads them.
        from ferroflow._cache_options import CacheOptions, task_cache_options

        (
            self.cache_policy,
            self.cache_key_fn,
            self.cache_expiration,
            self.refresh_cache,
            self.persist_result,
            self.result_storage,
            self.result_serializer,
            self.result_storage_key,
            self.cache_result_in_memory,
        ) = task_cache_options(
            owner,
            CacheOptions(
                cache_policy,
                cache_key_fn,
                cache_expiration,
                refresh_cache,
                persist_result,
                result_storage,
                result_serializer,
                result_storage_key,
                cache_result_in_memory,
            ),
        )
        self.isasync = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        self.isgenerator = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        code = getattr(fn, "__code__", None)
        self.task_key = f"{getattr(fn, '__qualname__', self.name).split('.')[-1]}-{abs(hash(code)) & 0xFFFFFFFF:08x}"
        self._signature = Signature(fn, "task")
        self._spec = self._make_spec()
        if log_prints:
            from ferroflow._prints import enable_print_capture

            enable_print_capture()

    def __repr__(self) -> str:
        return f"Task(name={self.name!r}, fn={self.fn!r})"

    def _make_spec(self) -> _core.TaskSpec:
        """What the engine reads of this task on every run. The hook lists are the task's
        own, so hooks added later (`@my_task.on_failure`) are seen without a new spec."""
        func, body = engine_function(self)
        return _core.TaskSpec(
            self,
            func,
            self.name,
            self.retries,
            self._delays,
            self.task_run_name,
            body,
            on_running=self.on_running_hooks,
            on_completion=self.on_completion_hooks,
            on_failure=self.on_failure_hooks,
            retry_condition=self.retry_condition_fn,
            retry_jitter_factor=float(self.retry_jitter_factor or 0.0),
        )

    def on_completion(self, fn: H) -> H:
        """Adds a hook called as `fn(task, task_run, state)` when a run completes (also
        from the cache); returns `fn`, so it decorates: `@my_task.on_completion`."""
        from ferroflow._state_hooks import checked_hooks

        self.on_completion_hooks.extend(checked_hooks(f"Task {self.name!r}", "on_completion", [fn], "task"))
        return fn

    def on_failure(self, fn: H) -> H:
        """Adds a hook called as `fn(task, task_run, state)` when a run fails for good
        (after its retries, timeouts included); returns `fn`: `@my_task.on_failure`."""
        from ferroflow._state_hooks import checked_hooks

        self.on_failure_hooks.extend(checked_hooks(f"Task {self.name!r}", "on_failure", [fn], "task"))
        return fn

    def on_running(self, fn: H) -> H:
        """Adds a hook called as `fn(task, task_run, state)` as each attempt of a run
        starts (Running, then Retrying); returns `fn`: `@my_task.on_running`."""
        from ferroflow._state_hooks import checked_hooks

        self.on_running_hooks.extend(checked_hooks(f"Task {self.name!r}", "on_running", [fn], "task"))
        return fn

    def __get__(self, instance: Any, owner: Any = None) -> Task[P, R]:
        """A task defined on a class binds like a method: to the instance, or for a
        classmethod to the class (read on the class or an instance); a staticmethod, or
        a method read on its class, is the task itself."""
        bound: Task[P, R] = bound_copy(self, instance, owner, "task")
        if bound is not self:
            bound._spec = bound._make_spec()
        return bound

    def with_options(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        version: str | None = None,
        task_run_name: Any = NotSet,
        retries: Any = NotSet,
        retry_delay_seconds: Any = NotSet,
        log_prints: Any = NotSet,
        **options: Any,
    ) -> Task[P, R]:
        """A copy of the task with some options changed; the rest are inherited."""
        inherited = {option: getattr(self, attribute) for option, attribute in _INHERITED_OPTIONS.items()}
        inherited.update(options)
        return Task(
            rewrap_method(self.fn, self._method_kind),
            name=name or self.name,
            description=description or self.description,
            tags=tags if tags is not None else self.tags,
            version=version or self.version,
            task_run_name=self.task_run_name if task_run_name is NotSet else task_run_name,
            retries=self.retries if retries is NotSet else retries,
            retry_delay_seconds=self.retry_delay_seconds if retry_delay_seconds is NotSet else retry_delay_seconds,
            log_prints=self.log_prints if log_prints is NotSet else log_prints,
            **inherited,
        )

    def bind_parameters(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments by parameter name, defaults applied."""
        return self._signature.parameters(args, kwargs)

    def _no_generators(self) -> None:
        if self.isgenerator:
            raise NotImplementedError(f"Task {self.name!r} is a generator; ferroflow does not run generator tasks yet")

    # What a type checker infers. A plain call is checked against the function's
    # parameters; mypy allows no keyword next to a parameter spec (PEP 612), so a call
    # with `return_state=` or `wait_for=` is typed by its result only.
    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def __call__(
        self: Task[P, Coroutine[Any, Any, T]],
        *args: Any,
        return_state: Literal[True],
        wait_for: Iterable[Any] | None = None,
        **kwargs: Any,
    ) -> Coroutine[Any, Any, State[T]]: ...
    @overload
    def __call__(
        self, *args: Any, return_state: Literal[True], wait_for: Iterable[Any] | None = None, **kwargs: Any
    ) -> State[R]: ...
    @overload
    def __call__(
        self, *args: Any, return_state: Literal[False], wait_for: Iterable[Any] | None = None, **kwargs: Any
    ) -> R: ...
    @overload
    def __call__(self, *args: Any, wait_for: Iterable[Any] | None, **kwargs: Any) -> R: ...

    def __call__(  # type: ignore[misc]  # mypy: the spec's kwargs might hold `return_state=` of any type
        self, *args: Any, return_state: bool = False, wait_for: Iterable[Any] | None = None, **kwargs: Any
    ) -> Any:
        """Runs the task now, in the calling thread, and returns its result (or its
        final State with `return_state=True`, which never raises the task's error).

        An async task returns a coroutine instead, as in Prefect: awaited, the run
        executes on the awaiting loop."""
        self._no_generators()
        self._signature.check(args, kwargs)
        if self.isasync:
            from ferroflow._async import call_inline

            return call_inline(self, args, kwargs, wait_for, return_state)
        context = FlowRunContext.get()
        if context is None:  # outside any flow: the default runner, the bare task name (Prefect)
            future = current_runner()._call(self, args, kwargs, wait_for, True)
        else:
            future = context.task_runner._call(self, args, kwargs, wait_for, False)
        if return_state:
            return future.state
        return future.result()

    @overload
    def submit(  # type: ignore[overload-overlap]  # a parameter named `return_state` is not a case to type
        self: Task[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> PrefectFuture[T]: ...
    @overload
    def submit(self, *args: P.args, **kwargs: P.kwargs) -> PrefectFuture[R]: ...
    @overload
    def submit(
        self: Task[P, Coroutine[Any, Any, T]],
        *args: Any,
        return_state: Literal[True],
        wait_for: Iterable[Any] | None = None,
        **kwargs: Any,
    ) -> State[T]: ...
    @overload
    def submit(
        self, *args: Any, return_state: Literal[True], wait_for: Iterable[Any] | None = None, **kwargs: Any
    ) -> State[R]: ...
    @overload
    def submit(
        self: Task[P, Coroutine[Any, Any, T]],
        *args: Any,
        return_state: Literal[False],
        wait_for: Iterable[Any] | None = None,
        **kwargs: Any,
    ) -> PrefectFuture[T]: ...
    @overload
    def submit(
        self, *args: Any, return_state: Literal[False], wait_for: Iterable[Any] | None = None, **kwargs: Any
    ) -> PrefectFuture[R]: ...
    @overload
    def submit(
        self: Task[P, Coroutine[Any, Any, T]], *args: Any, wait_for: Iterable[Any] | None, **kwargs: Any
    ) -> PrefectFuture[T]: ...
    @overload
    def submit(self, *args: Any, wait_for: Iterable[Any] | None, **kwargs: Any) -> PrefectFuture[R]: ...

    def submit(  # type: ignore[misc]  # as __call__'s
        self, *args: Any, return_state: bool = False, wait_for: Iterable[Any] | None = None, **kwargs: Any
    ) -> Any:
        """Hands a run to the task runner and returns its future at once."""
        if self.isgenerator:
            self._no_generators()
        self._signature.check(args, kwargs)
        future = current_runner()._submit(self, args, kwargs, wait_for)
        if return_state:
            future.wait()
            return future.state
        return future

    # A map's arguments are iterables of the parameters (or `unmapped`, `quote`, futures):
    # not expressible with the parameter spec, so only the result is typed.
    @overload
    def map(
        self: Task[P, Coroutine[Any, Any, T]],
        *args: Any,
        return_state: Literal[False] = False,
        wait_for: Iterable[Any] | None = None,
        deferred: bool = False,
        **kwargs: Any,
    ) -> PrefectFutureList[T]: ...
    @overload
    def map(
        self: Task[P, Coroutine[Any, Any, T]],
        *args: Any,
        return_state: Literal[True],
        wait_for: Iterable[Any] | None = None,
        deferred: bool = False,
        **kwargs: Any,
    ) -> list[State[T]]: ...
    @overload
    def map(
        self,
        *args: Any,
        return_state: Literal[False] = False,
        wait_for: Iterable[Any] | None = None,
        deferred: bool = False,
        **kwargs: Any,
    ) -> PrefectFutureList[R]: ...
    @overload
    def map(
        self,
        *args: Any,
        return_state: Literal[True],
        wait_for: Iterable[Any] | None = None,
        deferred: bool = False,
        **kwargs: Any,
    ) -> list[State[R]]: ...

    def map(
        self,
        *args: Any,
        return_state: bool = False,
        wait_for: Iterable[Any] | None = None,
        deferred: bool = False,
        **kwargs: Any,
    ) -> Any:
        """One run per element of the iterable arguments, zipped; returns their futures."""
        self._no_generators()
        if deferred:
            raise needs_server(f"Task {self.name!r}", "map(deferred=True)")
        call = split_map(self.name, self._signature, args, kwargs)
        futures = current_runner()._map(self, call, wait_for)
        if return_state:
            futures.wait()
            return [future.state for future in futures]
        return futures


    def delay(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Prefect's background task run: refused, it needs a server and task workers."""
        raise needs_server(f"Task {self.name!r}", ".delay()")

    def apply_async(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Prefect's background task run: refused, it needs a server and task workers."""
        raise needs_server(f"Task {self.name!r}", ".apply_async()")

    def serve(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Prefect's task worker: refused, it needs a server."""
        raise needs_server(f"Task {self.name!r}", ".serve()")


class _TaskDecorator(Protocol):
    """What `task(**options)` gives: a decorator generic over the function it gets."""

    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(__fn: Callable[P, R]) -> Task[P, R]: ...
@overload
def task(
    *,
    name: str | None = None,
    description: str | None = None,
    tags: Iterable[str] | None = None,
    version: str | None = None,
    cache_policy: Any = NotSet,
    cache_key_fn: Callable[[Any, dict[str, Any]], str | None] | None = None,
    cache_expiration: datetime.timedelta | None = None,
    task_run_name: str | Callable[..., str] | None = None,
    retries: int | None = None,
    retry_delay_seconds: float | Iterable[float] | Callable[[int], Iterable[float]] | None = None,
    retry_jitter_factor: float | None = None,
    persist_result: bool | None = None,
    result_storage: Any = None,
    result_storage_key: str | None = None,
    result_serializer: Any = None,
    cache_result_in_memory: bool = True,
    timeout_seconds: float | None = None,
    log_prints: bool | None = None,
    refresh_cache: bool | None = None,
    on_completion: list[Callable[..., Any]] | None = None,
    on_failure: list[Callable[..., Any]] | None = None,
    on_running: list[Callable[..., Any]] | None = None,
    retry_condition_fn: Callable[..., bool] | None = None,
    viz_return_value: Any = None,
) -> _TaskDecorator: ...


def task(__fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Makes a function a task; usable bare (`@task`) or with options (`@task(retries=2)`)."""
    options.setdefault("log_prints", None)
    if __fn is not None:
        return Task(__fn, **options)

    def decorate(fn: Callable[..., Any]) -> Task[..., Any]:
        return Task(fn, **options)

    return decorate
