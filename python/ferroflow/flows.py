"""`@flow` and `Flow`: Prefect's flow API. Calling a flow runs it in-process, no server."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, Protocol, TypeVar, overload

from ferroflow._arguments import Signature, bound_copy
from ferroflow._flow_engine import call_async_flow, run_flow
from ferroflow._prints import enable_print_capture
from ferroflow.exceptions import InvalidNameError
from ferroflow.task_runners import TaskRunner, ThreadPoolTaskRunner
from ferroflow.tasks import _reject_unsupported
from ferroflow.utilities.annotations import NotSet
from ferroflow.utilities.callables import copy_metadata, rewrap_method, unwrap_method

if TYPE_CHECKING:
    from ferroflow.states import State

__all__ = ["Flow", "flow"]

P = ParamSpec("P")  # the flow's parameters
R = TypeVar("R", covariant=True)  # what it returns (a task returning int is one returning object)
T = TypeVar("T")  # what an async flow's coroutine returns

_BANNED_NAME_CHARACTERS = ("/", "%", "&", ">", "<")

# Options of Prefect's @flow that ferroflow does not implement yet (see tasks._NOT_YET).
_FLOW_NOT_YET = {
    "timeout_seconds": None,
    "persist_result": None,
    "result_storage": None,
    "result_serializer": None,
    "cache_result_in_memory": True,
    "on_completion": None,
    "on_failure": None,
    "on_cancellation": None,
    "on_crashed": None,
    "on_running": None,
}


def _check_options(owner: str, **options: Any) -> None:
    """Prefect's pydantic checks of the flow options, as plain TypeErrors and ValueErrors
    naming the option and the flow, raised where the flow is decorated."""
    retries = options["retries"]
    if retries is not None:
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise TypeError(f"{owner}: retries must be an int, got {type(retries).__name__} {retries!r}")
        if retries < 0:
            raise ValueError(f"{owner}: retries must be >= 0, got {retries}")
    delay = options["retry_delay_seconds"]
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, (int, float)):
            raise TypeError(
                f"{owner}: retry_delay_seconds must be a number of seconds, got {type(delay).__name__} {delay!r}"
            )
        if not delay >= 0:
            raise ValueError(f"{owner}: retry_delay_seconds must be >= 0, got {delay}")
    for option in ("version", "description"):
        if options[option] is not None and not isinstance(options[option], str):
            raise TypeError(
                f"{owner}: {option} must be a string, got {type(options[option]).__name__} {options[option]!r}"
            )
    run_name = options["flow_run_name"]
    if run_name is not None and not (isinstance(run_name, str) or callable(run_name)):
        raise TypeError(
            f"{owner}: flow_run_name must be a string or a callable, got {type(run_name).__name__} {run_name!r}"
        )
    for option in ("validate_parameters", "log_prints"):
        value = options[option]
        if not (value is None or isinstance(value, bool)):
            raise TypeError(f"{owner}: {option} must be True or False, got {type(value).__name__} {value!r}")


class Flow(Generic[P, R]):
    """A function run as a flow: each call is a flow run with its own task runner.
    It looks like its function (`__name__`, `__doc__`, `__wrapped__`, ...), as in Prefect."""

    def __init__(
        self,
        fn: Callable[P, R] | classmethod[Any, P, R] | staticmethod[P, R],
        name: str | None = None,
        version: str | None = None,
        flow_run_name: str | Callable[[], str] | None = None,
        retries: int | None = None,
        retry_delay_seconds: int | float | None = None,
        task_runner: TaskRunner[Any] | type[TaskRunner[Any]] | None = None,
        description: str | None = None,
        validate_parameters: bool = True,
        log_prints: bool | None = None,
        **options: Any,
    ) -> None:
        fn, self._method_kind = unwrap_method(fn)
        if not callable(fn):
            raise TypeError(f"@flow expects a function, got {type(fn).__name__}: {fn!r}")
        copy_metadata(self, fn)  # first: the flow's own attributes below win
        import inspect  # here, not at import: `import ferroflow` stays fast

        self.fn: Callable[..., R] = fn
        if name is not None and not isinstance(name, str):
            raise TypeError(f"@flow: name must be a string, got {type(name).__name__} {name!r}")
        self.name = name or getattr(fn, "__name__", type(fn).__name__).replace("_", "-")
        banned = [c for c in _BANNED_NAME_CHARACTERS if c in self.name]
        if banned:
            raise InvalidNameError(
                f"Flow name {self.name!r} contains an invalid character {banned[0]!r}; "
                f"flow names may not contain {' '.join(_BANNED_NAME_CHARACTERS)}"
            )
        for option, value in options.items():
            if option in _FLOW_NOT_YET:
                if value is not _FLOW_NOT_YET[option]:
                    raise NotImplementedError(f"Flow {self.name!r} option {option!r} is not supported by ferroflow yet")
            else:
                _reject_unsupported(f"Flow {self.name!r}", {option: value})
        _check_options(
            f"Flow {self.name!r}",
            retries=retries,
            retry_delay_seconds=retry_delay_seconds,
            version=version,
            description=description,
            flow_run_name=flow_run_name,
            validate_parameters=validate_parameters,
            log_prints=log_prints,
        )
        self.version = version
        self.flow_run_name = flow_run_name
        self.retries = retries or 0
        self.retry_delay_seconds = retry_delay_seconds or 0
        if isinstance(task_runner, type):
            task_runner = task_runner()
        if task_runner is not None and not isinstance(task_runner, TaskRunner):
            raise TypeError(f"Flow {self.name!r}: task_runner must be a TaskRunner or its class, got {task_runner!r}")
        self.task_runner: TaskRunner[Any] = task_runner or ThreadPoolTaskRunner()
        self.description = description if description is not None else inspect.getdoc(fn)
        self.should_validate_parameters = validate_parameters
        self.log_prints = log_prints
        self.isasync = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        self.isgenerator = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        self._signature = Signature(fn, "flow")
        if log_prints:
            enable_print_capture()

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r}, fn={self.fn!r})"

    def __get__(self, instance: Any, owner: Any = None) -> Flow[P, R]:
        """A flow defined on a class binds like a method (also as a classmethod or
        staticmethod), as in Prefect 3."""
        bound: Flow[P, R] = bound_copy(self, instance, owner, "flow")
        return bound

    def with_options(
        self,
        *,
        name: str | None = None,
        version: str | None = None,
        retries: int | None = None,
        retry_delay_seconds: int | float | None = None,
        description: str | None = None,
        flow_run_name: str | Callable[[], str] | None = None,
        task_runner: TaskRunner[Any] | type[TaskRunner[Any]] | None = None,
        validate_parameters: bool | None = None,
        log_prints: Any = NotSet,
        **options: Any,
    ) -> Flow[P, R]:
        """A copy of the flow with some options changed; the rest are inherited."""
        return Flow(
            rewrap_method(self.fn, self._method_kind),
            name=name or self.name,
            version=version or self.version,
            flow_run_name=flow_run_name or self.flow_run_name,
            retries=retries if retries is not None else self.retries,
            retry_delay_seconds=retry_delay_seconds if retry_delay_seconds is not None else self.retry_delay_seconds,
            task_runner=task_runner or self.task_runner.duplicate(),
            description=description or self.description,
            validate_parameters=validate_parameters
            if validate_parameters is not None
            else self.should_validate_parameters,
            log_prints=self.log_prints if log_prints is NotSet else log_prints,
            **options,
        )

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Checks that `parameters` bind to the flow's signature; returns them by name."""
        args, kwargs = self._signature.to_call(parameters)
        return self._signature.parameters(args, kwargs)

    # What a type checker infers, as for tasks (see `Task.__call__`): a plain call is
    # checked against the function's parameters, one with `return_state=` by its result.
    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def __call__(
        self: Flow[P, Coroutine[Any, Any, T]],
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

    def __call__(  # type: ignore[misc]  # as Task.__call__'s
        self, *args: Any, return_state: bool = False, wait_for: Iterable[Any] | None = None, **kwargs: Any
    ) -> Any:
        """Runs the flow: returns its result, or its final State with `return_state=True`.
        An async flow returns a coroutine, as in Prefect: `await` it or `asyncio.run` it."""
        if self.isasync:
            return call_async_flow(self, args, kwargs, return_state=return_state, wait_for=wait_for)
        return run_flow(self, args, kwargs, return_state=return_state, wait_for=wait_for)


class _FlowDecorator(Protocol):
    """What `flow(**options)` gives: a decorator generic over the function it gets."""

    def __call__(self, fn: Callable[P, R], /) -> Flow[P, R]: ...


@overload
def flow(__fn: Callable[P, R]) -> Flow[P, R]: ...
@overload
def flow(
    *,
    name: str | None = None,
    version: str | None = None,
    flow_run_name: str | Callable[[], str] | None = None,
    retries: int | None = None,
    retry_delay_seconds: float | None = None,
    task_runner: TaskRunner[Any] | type[TaskRunner[Any]] | None = None,
    description: str | None = None,
    timeout_seconds: float | None = None,
    validate_parameters: bool = True,
    persist_result: bool | None = None,
    result_storage: Any = None,
    result_serializer: Any = None,
    cache_result_in_memory: bool = True,
    log_prints: bool | None = None,
    on_completion: list[Callable[..., Any]] | None = None,
    on_failure: list[Callable[..., Any]] | None = None,
    on_cancellation: list[Callable[..., Any]] | None = None,
    on_crashed: list[Callable[..., Any]] | None = None,
    on_running: list[Callable[..., Any]] | None = None,
) -> _FlowDecorator: ...


def flow(__fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Makes a function a flow; usable bare (`@flow`) or with options (`@flow(retries=1)`)."""
    if __fn is not None:
        return Flow(__fn, **options)

    def decorate(fn: Callable[..., Any]) -> Flow[..., Any]:
        return Flow(fn, **options)

    return decorate
