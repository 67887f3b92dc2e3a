"""`@flow` and `Flow`: Prefect's flow API. Calling a flow runs it in-process, no server."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Generic, Literal, NoReturn, ParamSpec, Protocol, TypeVar, overload

from ferroflow._arguments import Signature, bound_copy
from ferroflow._flow_engine import call_async_flow, run_flow
from ferroflow._prints import enable_print_capture
from ferroflow._task_runners import TaskRunner, ThreadPoolTaskRunner
from ferroflow.exceptions import InvalidNameError
from ferroflow.tasks import _timeout, needs_server
from ferroflow.utilities.annotations import NotSet
from ferroflow.utilities.callables import copy_metadata, rewrap_method, unwrap_method

if TYPE_CHECKING:
    from ferroflow._flow_parameters import ParameterValidator
    from ferroflow._state_hooks import Hook
    from ferroflow.states import State

__all__ = ["Flow", "flow"]

P = ParamSpec("P")  # the flow's parameters
R = TypeVar("R", covariant=True)  # what it returns (a task returning int is one returning object)
T = TypeVar("T")  # what an async flow's coroutine returns

_BANNED_NAME_CHARACTERS = ("/", "%", "&", ">", "<")


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
    for option in ("validate_parameters", "log_prints", "persist_result", "cache_result_in_memory"):
        value = options[option]
        may_be_none = option in ("log_prints", "persist_result")
        if not (isinstance(value, bool) or (may_be_none and value is None)):
            allowed = "True, False or None" if may_be_none else "True or False"
            raise TypeError(f"{owner}: {option} must be {allowed}, got {type(value).__name__} {value!r}")


def _check_result_options(owner: str, result_storage: Any, result_serializer: Any) -> None:
    """`result_storage` and `result_serializer` checked as a task's are: a wrong type is a
    TypeError, a Prefect storage block or remote URL a NotImplementedError (results are
    stored in local folders), naming the flow and the option."""
    from ferroflow._cache_options import _named

    if result_storage is not None:
        from ferroflow.results import resolve_result_storage

        _named(owner, "result_storage", resolve_result_storage, result_storage)
    if result_serializer is not None:
        from ferroflow.serializers import resolve_serializer

        _named(owner, "result_serializer", resolve_serializer, result_serializer)


def _reject_unknown(owner: str, options: dict[str, Any]) -> None:
    """Prefect's @flow takes no other keyword: one that is not known is a TypeError
    naming the flow (where Python's own would name only `__init__`)."""
    if options:
        raise TypeError(f"{owner}: @flow got an unexpected keyword argument {next(iter(options))!r}")


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
        timeout_seconds: int | float | None = None,
        validate_parameters: bool = True,
        persist_result: bool | None = None,
        result_storage: Any = None,
        result_serializer: Any = None,
        cache_result_in_memory: bool = True,
        log_prints: bool | None = None,
        on_completion: Iterable[Hook] | None = None,
        on_failure: Iterable[Hook] | None = None,
        on_cancellation: Iterable[Hook] | None = None,
        on_crashed: Iterable[Hook] | None = None,
        on_running: Iterable[Hook] | None = None,
        executor: Any = None,
        **options: Any,
    ) -> None:
        fn, self._method_kind = unwrap_method(fn)
        if not callable(fn):
            raise TypeError(f"@flow expects a function, got {type(fn).__name__}: {fn!r}")
        copy_metadata(self, fn)  # first: the flow's own attributes below win
        import inspect  # here, not at import: `import ferroflow` stays fast

        from ferroflow._flow_parameters import ParameterValidator, check_validatable
        from ferroflow._state_hooks import checked_hooks

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
        owner = f"Flow {self.name!r}"
        _reject_unknown(owner, options)
        _check_options(
            owner,
            retries=retries,
            retry_delay_seconds=retry_delay_seconds,
            version=version,
            description=description,
            flow_run_name=flow_run_name,
            validate_parameters=validate_parameters,
            log_prints=log_prints,
            persist_result=persist_result,
            cache_result_in_memory=cache_result_in_memory,
        )
        self.version = version
        self.flow_run_name = flow_run_name
        self.retries = retries or 0
        self.retry_delay_seconds = retry_delay_seconds or 0
        #: Seconds an attempt of a run may take (0 or None: no limit), as a float.
        self.timeout_seconds = _timeout(timeout_seconds, owner)
        if executor is not None:  # Prefect 2's name for the task runner (ferroflow.executors)
            from ferroflow.executors import task_runner_for

            task_runner = task_runner_for(executor, task_runner, owner, stacklevel=2)
        if isinstance(task_runner, type):
            task_runner = task_runner()
        if task_runner is not None and not isinstance(task_runner, TaskRunner):
            raise TypeError(f"Flow {self.name!r}: task_runner must be a TaskRunner or its class, got {task_runner!r}")
        self.task_runner: TaskRunner[Any] = task_runner or ThreadPoolTaskRunner()
        self.description = description if description is not None else inspect.getdoc(fn)
        self.should_validate_parameters = validate_parameters
        self.log_prints = log_prints
        # Results, as Prefect keeps them: a storage or serializer turns persistence on.
        if result_storage is not None or result_serializer is not None:
            _check_result_options(owner, result_storage, result_serializer)
            if persist_result is None:
                persist_result = True
        self.persist_result = persist_result
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        self.cache_result_in_memory = cache_result_in_memory
        self.on_completion_hooks = checked_hooks(owner, "on_completion", on_completion, "flow")
        self.on_failure_hooks = checked_hooks(owner, "on_failure", on_failure, "flow")
        self.on_cancellation_hooks = checked_hooks(owner, "on_cancellation", on_cancellation, "flow")
        self.on_crashed_hooks = checked_hooks(owner, "on_crashed", on_crashed, "flow")
        self.on_running_hooks = checked_hooks(owner, "on_running", on_running, "flow")
        self.isasync = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        self.isgenerator = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        self._signature = Signature(fn, "flow")
        if validate_parameters:
            check_validatable(owner, self._signature.signature)
        self._validator = ParameterValidator(fn, self._signature.signature)
        #: The validator of this flow's bound copies (a method flow read on an instance),
        #: made when first needed; their signature lacks the bound first parameter.
        self._bound_validator: ParameterValidator | None = None
        if log_prints:
            enable_print_capture()

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r}, fn={self.fn!r})"

    def __get__(self, instance: Any, owner: Any = None) -> Flow[P, R]:
        """A flow defined on a class binds like a method (also as a classmethod or
        staticmethod), as in Prefect 3."""
        bound: Flow[P, R] = bound_copy(self, instance, owner, "flow")
        if bound is not self:
            if self._bound_validator is None:
                from ferroflow._flow_parameters import ParameterValidator

                self._bound_validator = ParameterValidator(bound.fn, bound._signature.signature)
            bound._validator = self._bound_validator
        return bound

    # Registering hooks with a decorator, as Prefect's: each appends and returns the hook.

    def on_completion(self, fn: Hook) -> Hook:
        self.on_completion_hooks.append(fn)
        return fn

    def on_failure(self, fn: Hook) -> Hook:
        self.on_failure_hooks.append(fn)
        return fn

    def on_cancellation(self, fn: Hook) -> Hook:
        self.on_cancellation_hooks.append(fn)
        return fn

    def on_crashed(self, fn: Hook) -> Hook:
        self.on_crashed_hooks.append(fn)
        return fn

    def on_running(self, fn: Hook) -> Hook:
        self.on_running_hooks.append(fn)
        return fn

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
        timeout_seconds: int | float | None = None,
        validate_parameters: bool | None = None,
        persist_result: Any = NotSet,
        result_storage: Any = NotSet,
        result_serializer: Any = NotSet,
        cache_result_in_memory: bool | None = None,
        log_prints: Any = NotSet,
        on_completion: Iterable[Hook] | None = None,
        on_failure: Iterable[Hook] | None = None,
        on_cancellation: Iterable[Hook] | None = None,
        on_crashed: Iterable[Hook] | None = None,
        on_running: Iterable[Hook] | None = None,
        **options: Any,
    ) -> Flow[P, R]:
        """A copy of the flow with some options changed; the rest are inherited, by
        Prefect's rules: an option given as None (or `NotSet`, or an empty hook list)
        keeps the flow's own."""
        return Flow(
            rewrap_method(self.fn, self._method_kind),
            name=name or self.name,
            version=version or self.version,
            flow_run_name=flow_run_name or self.flow_run_name,
            retries=retries if retries is not None else self.retries,
            retry_delay_seconds=retry_delay_seconds if retry_delay_seconds is not None else self.retry_delay_seconds,
            task_runner=task_runner or self.task_runner.duplicate(),
            description=description or self.description,
            timeout_seconds=timeout_seconds if timeout_seconds is not None else self.timeout_seconds,
            validate_parameters=validate_parameters
            if validate_parameters is not None
            else self.should_validate_parameters,
            persist_result=self.persist_result if persist_result is NotSet else persist_result,
            result_storage=self.result_storage if result_storage is NotSet else result_storage,
            result_serializer=self.result_serializer if result_serializer is NotSet else result_serializer,
            cache_result_in_memory=cache_result_in_memory
            if cache_result_in_memory is not None
            else self.cache_result_in_memory,
            log_prints=self.log_prints if log_prints is NotSet else log_prints,
            on_completion=on_completion or self.on_completion_hooks,
            on_failure=on_failure or self.on_failure_hooks,
            on_cancellation=on_cancellation or self.on_cancellation_hooks,
            on_crashed=on_crashed or self.on_crashed_hooks,
            on_running=on_running or self.on_running_hooks,
            **options,
        )

    # Prefect's ways of running a flow elsewhere: deployments, served by its server's
    # workers. A script calling one stops with the reason, instead of an AttributeError.

    def serve(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise needs_server(f"Flow {self.name!r}", ".serve()")

    def deploy(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise needs_server(f"Flow {self.name!r}", ".deploy()")

    def to_deployment(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise needs_server(f"Flow {self.name!r}", ".to_deployment()")

    @classmethod
    def from_source(cls, *args: Any, **kwargs: Any) -> NoReturn:
        raise needs_server("Flow", ".from_source()")

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """`parameters` bound to the flow's signature (defaults applied) and, where pydantic
        is installed, each annotated one validated and coerced to its type hint, as
        Prefect's; raises ParameterBindError or ParameterTypeError."""
        args, kwargs = self._signature.to_call(parameters)
        return self._validator.validate(self._signature.parameters(args, kwargs))

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
    executor: Any = None,
) -> _FlowDecorator: ...


def flow(__fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Makes a function a flow; usable bare (`@flow`) or with options (`@flow(retries=1)`)."""
    if options.get("executor") is not None:
        # Prefect 2's `executor=` becomes the task runner here, so that its
        # DeprecationWarning points at the user's `@flow(...)` line.
        from ferroflow.executors import task_runner_for

        options["task_runner"] = task_runner_for(
            options.pop("executor"), options.get("task_runner"), "@flow", stacklevel=2
        )
    if __fn is not None:
        return Flow(__fn, **options)

    def decorate(fn: Callable[..., Any]) -> Flow[..., Any]:
        return Flow(fn, **options)

    return decorate
