"""Prefect's exception names, so `except` clauses written for Prefect port unchanged.

Only the exceptions that in-flow code can meet are here; the server, deployment and
block errors have no meaning without a Prefect API and are left out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ferroflow.states import State

__all__ = [
    "CancelledRun",
    "CrashedRun",
    "ExternalSignal",
    "FailedRun",
    "FerroflowException",
    "HashError",
    "InvalidNameError",
    "MappingLengthMismatch",
    "MappingMissingIterable",
    "MissingContextError",
    "MissingResult",
    "ParameterBindError",
    "ParameterTypeError",
    "PausedRun",
    "PrefectException",
    "ReservedArgumentError",
    "SerializationError",
    "SignatureMismatchError",
    "TaskRunNameError",
    "TerminationSignal",
    "UnfinishedRun",
    "UpstreamTaskError",
]


class PrefectException(Exception):
    """Base of every ferroflow error; named as in Prefect so handlers port."""


FerroflowException = PrefectException


class CrashedRun(PrefectException):
    """A crashed run's result was read and no exception was attached to its state."""


class FailedRun(PrefectException):
    """A failed run's result was read and no exception was attached to its state."""


class CancelledRun(PrefectException):
    """A cancelled run's result was read and no exception was attached to its state."""


class PausedRun(PrefectException):
    """A paused run's result was read; paused runs have no result yet."""

    def __init__(self, *args: Any, state: State[Any] | None = None) -> None:
        super().__init__(*args)
        self.state = state


class UnfinishedRun(PrefectException):
    """A run's result was read before the run reached a final state."""


class MissingResult(PrefectException):
    """A state's result data is missing."""


class ParameterTypeError(PrefectException):
    """A flow parameter failed type validation."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)

    @classmethod
    def from_validation_error(cls, exc: Any) -> ParameterTypeError:
        """Build Prefect's message from a pydantic `ValidationError` (duck-typed: `.errors()`)."""
        bad_params = [
            f"{'.'.join(str(item) for item in err['loc'])}: {err['msg']}" for err in exc.errors()
        ]
        return cls("Flow run received invalid parameters:\n - " + "\n - ".join(bad_params))


class ParameterBindError(TypeError, PrefectException):
    """Call arguments could not be bound to the function's parameters."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)

    @classmethod
    def from_bind_failure(
        cls,
        fn: Callable[..., Any],
        exc: TypeError,
        call_args: tuple[Any, ...],
        call_kwargs: dict[str, Any],
    ) -> ParameterBindError:
        """Build Prefect's message naming the function, its signature and what it got."""
        import inspect  # only on the error path: inspect is slow to import

        fn_signature = str(inspect.signature(fn)).strip("()")
        base = f"Error binding parameters for function '{fn.__name__}': {exc}"
        signature = f"Function '{fn.__name__}' has signature '{fn_signature}'"
        received = f"received args: {call_args} and kwargs: {list(call_kwargs.keys())}"
        return cls(f"{base}.\n{signature} but {received}.")


class SignatureMismatchError(PrefectException, TypeError):
    """Parameters given to a function do not match its signature."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)

    @classmethod
    def from_bad_params(
        cls, expected_params: list[str], provided_params: list[str]
    ) -> SignatureMismatchError:
        """Build Prefect's message listing expected and provided parameter names."""
        return cls(
            f"Function expects parameters {expected_params} but was provided with"
            f" parameters {provided_params}"
        )


class UpstreamTaskError(PrefectException):
    """A task needs the result of an upstream task that did not complete."""


class MissingContextError(PrefectException, RuntimeError):
    """Something that needs an active flow or task run was called outside one."""


class ReservedArgumentError(PrefectException, TypeError):
    """A decorated function has a parameter named like a reserved keyword (`wait_for`, ...)."""


class InvalidNameError(PrefectException, ValueError):
    """A flow or task name contains characters that are not allowed."""


class MappingLengthMismatch(PrefectException):
    """`Task.map` got iterables of different lengths."""


class MappingMissingIterable(PrefectException):
    """`Task.map` got no iterable argument to map over."""


class TaskRunNameError(PrefectException, ValueError):
    """A task's `task_run_name` template could not be formatted with a run's parameters,
    or its callable raised (ferroflow's own name: Prefect lets the raw error through).
    The run fails with it; `__cause__` is the original error."""


class HashError(PrefectException):
    """Objects that could be neither JSON-encoded nor pickled, so have no stable hash."""


class SerializationError(PrefectException):
    """A result that its serializer could not turn into bytes."""


class ExternalSignal(BaseException):
    """Base of signal-like exceptions from outside; a BaseException so user code won't catch it."""


class TerminationSignal(ExternalSignal):
    """The process received a termination signal while a run was active."""

    def __init__(self, signal: int) -> None:
        super().__init__(signal)
        self.signal = signal
