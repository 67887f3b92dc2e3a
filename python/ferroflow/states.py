"""Prefect's State model and helpers, as a light plain class.

Prefect's `State` is a pydantic model; ours has the same fields, methods, names,
messages and `str()`/`repr()` formats, but is a `__slots__` class because the engine
builds one for every `future.state` read. The id and the `StateDetails` are created
on first access, since most states are looked at once and thrown away.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Collection
from enum import Enum
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeGuard, TypeVar, cast

from ferroflow.exceptions import (
    CancelledRun,
    CrashedRun,
    FailedRun,
    PausedRun,
    TerminationSignal,
    UnfinishedRun,
)
from ferroflow.utilities.annotations import BaseAnnotation
from ferroflow.utilities.text import safe_repr, safe_str

if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "TERMINAL_STATES",
    "AwaitingConcurrencySlot",
    "AwaitingRetry",
    "Cancelled",
    "Cancelling",
    "Completed",
    "Crashed",
    "Failed",
    "InfrastructurePending",
    "Late",
    "NotReady",
    "Paused",
    "Pending",
    "Retrying",
    "Running",
    "Scheduled",
    "State",
    "StateDetails",
    "StateGroup",
    "StateType",
    "Submitting",
    "Suspended",
    "exception_to_crashed_state",
    "exception_to_failed_state",
    "format_exception",
    "get_state_exception",
    "is_state_iterable",
    "raise_state_exception",
    "return_value_to_state",
]


def _utc_now() -> datetime:
    """The time now, in UTC, as Prefect stamps states."""
    from datetime import datetime, timezone  # here, not at import: `import ferroflow` stays fast

    return datetime.now(timezone.utc)


R = TypeVar("R")


class StateType(str, Enum):
    """The kind of a state; `is_*()` predicates and the engine compare on this, not the name."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.value}"


TERMINAL_STATES = frozenset(
    {StateType.COMPLETED, StateType.CANCELLED, StateType.FAILED, StateType.CRASHED}
)

# Prefect's default name: the type's words, capitalised ("COMPLETED" -> "Completed").
_DEFAULT_NAMES = {t: " ".join(w.capitalize() for w in t.value.split("_")) for t in StateType}
_FAILURE_TYPES = frozenset({StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})
_FIELDS = frozenset({"type", "name", "message", "data", "timestamp", "state_details", "id"})


class StateDetails:
    """Run ids and scheduling/caching/pause metadata attached to a state."""

    __slots__ = (
        "flow_run_id",
        "task_run_id",
        "child_flow_run_id",
        "scheduled_time",
        "cache_key",
        "cache_expiration",
        "retriable",
        "refresh_cache",
        "pause_timeout",
        "pause_reschedule",
        "pause_key",
    )

    def __init__(
        self,
        flow_run_id: Any = None,
        task_run_id: Any = None,
        child_flow_run_id: Any = None,
        scheduled_time: datetime | None = None,
        cache_key: str | None = None,
        cache_expiration: datetime | None = None,
        retriable: bool | None = None,
        refresh_cache: bool | None = None,
        pause_timeout: datetime | None = None,
        pause_reschedule: bool = False,
        pause_key: str | None = None,
    ) -> None:
        self.flow_run_id = flow_run_id
        self.task_run_id = task_run_id
        self.child_flow_run_id = child_flow_run_id
        self.scheduled_time = scheduled_time
        self.cache_key = cache_key
        self.cache_expiration = cache_expiration
        self.retriable = retriable
        self.refresh_cache = refresh_cache
        self.pause_timeout = pause_timeout
        self.pause_reschedule = pause_reschedule
        self.pause_key = pause_key

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def model_copy(self) -> StateDetails:
        """A shallow copy, so a copied State can change its details without aliasing."""
        return StateDetails(*self._values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StateDetails):
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]  # mutable, like the pydantic model

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"StateDetails({fields})"


def _as_details(value: StateDetails | dict[str, Any] | None) -> StateDetails:
    """Accept what pydantic's `StateDetails.model_validate` accepts: an instance, a dict or None."""
    if value is None:
        return StateDetails()
    if isinstance(value, dict):
        return StateDetails(**value)
    return value


class State(Generic[R]):
    """The state of a task or flow run: a type, a display name, a message and the data.

    Generic over the result type, as Prefect's model (`State[int]`); `Generic` adds no
    per-instance cost (no `__new__`, empty `__slots__`)."""

    __slots__ = ("type", "name", "message", "data", "timestamp", "_state_details", "_id")

    def __init__(
        self,
        type: StateType | str,
        name: str | None = None,
        message: str | None = None,
        data: Any = None,
        timestamp: datetime | None = None,
        state_details: StateDetails | dict[str, Any] | None = None,
        id: Any = None,
    ) -> None:
        state_type = type if isinstance(type, StateType) else StateType(type)
        self.type: StateType = state_type
        self.name: str = _DEFAULT_NAMES[state_type] if name is None else name
        self.message = message
        self.data = data
        self.timestamp = _utc_now() if timestamp is None else timestamp
        self._state_details = None if state_details is None else _as_details(state_details)
        self._id = id
        if state_type is StateType.SCHEDULED and not self.state_details.scheduled_time:
            # Prefect's model validator: a scheduled state is always scheduled for some time.
            self.state_details.scheduled_time = self.timestamp

    @property
    def id(self) -> Any:
        """A uuid4, made on first read: most states are never asked for their id."""
        if self._id is None:
            from uuid import uuid4  # lazily: importing uuid costs more than the rest of this module

            self._id = uuid4()
        return self._id

    @id.setter
    def id(self, value: Any) -> None:
        self._id = value

    @property
    def state_details(self) -> StateDetails:
        if self._state_details is None:
            self._state_details = StateDetails()
        return self._state_details

    @state_details.setter
    def state_details(self, value: StateDetails | dict[str, Any] | None) -> None:
        self._state_details = _as_details(value)

    def is_scheduled(self) -> bool:
        return self.type is StateType.SCHEDULED

    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_completed(self) -> bool:
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type is StateType.CRASHED

    def is_cancelled(self) -> bool:
        return self.type is StateType.CANCELLED

    def is_cancelling(self) -> bool:
        return self.type is StateType.CANCELLING

    def is_paused(self) -> bool:
        return self.type is StateType.PAUSED

    def is_final(self) -> bool:
        return self.type in TERMINAL_STATES

    def result(self, raise_on_failure: bool = True, retry_result_failure: bool = True) -> Any:
        """The run's return value; for a failed run its exception, raised or returned.

        `retry_result_failure` is accepted for Prefect compatibility: results live in
        memory here, so reading one never fails and there is nothing to retry.
        """
        state_type = self.type
        if state_type is StateType.PAUSED:
            raise PausedRun("Run is paused, its result is not available.", state=self)
        if state_type not in TERMINAL_STATES:
            raise UnfinishedRun(f"Run is in {state_type.name} state, its result is not available.")
        if state_type is not StateType.COMPLETED:
            if raise_on_failure:
                raise get_state_exception(self)
            if self.data is None:
                return get_state_exception(self)
        return self.data

    async def aresult(
        self, raise_on_failure: bool = True, retry_result_failure: bool = True
    ) -> Any:
        """Awaitable `result()`, for code written against Prefect's async API."""
        return self.result(raise_on_failure, retry_result_failure)

    def model_copy(self, *, update: dict[str, Any] | None = None) -> State[R]:
        """A copy with the same id and a new timestamp (as Prefect's), `update` applied."""
        new = State.__new__(type(self))
        new.type = self.type
        new.name = self.name
        new.message = self.message
        new.data = self.data
        new.timestamp = _utc_now()
        details = self._state_details
        new._state_details = None if details is None else details.model_copy()
        new._id = self.id  # the copy is the same state: it must share the id, so fix it now
        if update:
            for field, value in update.items():
                if field not in _FIELDS:
                    raise TypeError(f"State has no field {field!r}")
                setattr(new, field, value)
        return new

    def fresh_copy(self) -> State[R]:
        """A copy with a new id and timestamp: the same state, entered again."""
        new = self.model_copy()
        new._id = None
        return new

    def _key(self) -> tuple[Any, ...]:
        return (
            self.id,
            self.type,
            self.name,
            self.message,
            self.timestamp,
            self.state_details,
            self.data,
        )

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        details = self._state_details
        if details is None:
            return hash((None, None, self.timestamp, self.type))
        return hash((details.flow_run_id, details.task_run_id, self.timestamp, self.type))

    def __getstate__(self) -> tuple[Any, ...]:
        # Fix the id before pickling, or each unpickled copy would invent its own.
        return (
            self.type,
            self.name,
            self.message,
            self.data,
            self.timestamp,
            self._state_details,
            self.id,
        )

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        (
            self.type,
            self.name,
            self.message,
            self.data,
            self.timestamp,
            self._state_details,
            self._id,
        ) = state

    def __repr__(self) -> str:
        return (
            f"{self.name}(message={safe_repr(self.message)}, type={self.type.value}, "
            f"result={safe_repr(self.data)})"
        )

    def __str__(self) -> str:
        parts: list[str] = []
        if self.message:
            parts.append(repr(self.message))
        if self.type.value.lower() != self.name.lower():
            parts.append(f"type={self.type.value}")
        return f"{self.name}({', '.join(parts)})"



# -- constructors (Prefect's `prefect.states` functions) -------------------------------


def Scheduled(
    cls: type[State[Any]] = State, scheduled_time: datetime | None = None, **kwargs: Any
) -> State[Any]:
    """A Scheduled state, due at `scheduled_time` (default: now)."""
    state_details = _as_details(kwargs.pop("state_details", None))
    if scheduled_time is None:
        scheduled_time = _utc_now()
    elif state_details.scheduled_time:
        raise ValueError("An extra scheduled_time was provided in state_details")
    state_details.scheduled_time = scheduled_time
    return cls(type=StateType.SCHEDULED, state_details=state_details, **kwargs)


def Pending(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """A Pending state: the run exists but has not started."""
    return cls(type=StateType.PENDING, **kwargs)


def Running(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """A Running state."""
    return cls(type=StateType.RUNNING, **kwargs)


def Completed(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """A Completed state; return `Completed(name="Skipped")` from a flow to set it by hand."""
    return cls(type=StateType.COMPLETED, **kwargs)


def Failed(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """A Failed state; `data` holds the exception when there is one."""
    return cls(type=StateType.FAILED, **kwargs)


def Crashed(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """A Crashed state: the run was interrupted from outside its user code."""
    return cls(type=StateType.CRASHED, **kwargs)


def Cancelling(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """A Cancelling state."""
    return cls(type=StateType.CANCELLING, **kwargs)


def Cancelled(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """A Cancelled state."""
    return cls(type=StateType.CANCELLED, **kwargs)


def Paused(
    cls: type[State[Any]] = State,
    timeout_seconds: float | None = None,
    pause_expiration_time: datetime | None = None,
    reschedule: bool = False,
    pause_key: str | None = None,
    **kwargs: Any,
) -> State[Any]:
    """A Paused state, with Prefect's checks on the pause timeout."""
    state_details = _as_details(kwargs.pop("state_details", None))
    if state_details.pause_timeout:
        raise ValueError("An extra pause timeout was provided in state_details")
    if pause_expiration_time is not None and timeout_seconds is not None:
        raise ValueError("Cannot supply both a pause_expiration_time and timeout_seconds")
    if pause_expiration_time is not None:
        state_details.pause_timeout = pause_expiration_time
    elif timeout_seconds is not None:
        from datetime import timedelta

        state_details.pause_timeout = _utc_now() + timedelta(seconds=timeout_seconds)
    state_details.pause_reschedule = reschedule
    state_details.pause_key = pause_key
    return cls(type=StateType.PAUSED, state_details=state_details, **kwargs)


def Suspended(
    cls: type[State[Any]] = State,
    timeout_seconds: float | None = None,
    pause_expiration_time: datetime | None = None,
    pause_key: str | None = None,
    **kwargs: Any,
) -> State[Any]:
    """A Paused state named Suspended, which reschedules the run when resumed."""
    return Paused(
        cls=cls,
        name="Suspended",
        reschedule=True,
        timeout_seconds=timeout_seconds,
        pause_expiration_time=pause_expiration_time,
        pause_key=pause_key,
        **kwargs,
    )


def AwaitingRetry(
    cls: type[State[Any]] = State, scheduled_time: datetime | None = None, **kwargs: Any
) -> State[Any]:
    """A Scheduled state named AwaitingRetry: a retry waiting out its delay."""
    return Scheduled(cls=cls, scheduled_time=scheduled_time, name="AwaitingRetry", **kwargs)


def AwaitingConcurrencySlot(
    cls: type[State[Any]] = State, scheduled_time: datetime | None = None, **kwargs: Any
) -> State[Any]:
    """A Scheduled state named AwaitingConcurrencySlot."""
    return Scheduled(
        cls=cls, scheduled_time=scheduled_time, name="AwaitingConcurrencySlot", **kwargs
    )


def Retrying(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """A Running state named Retrying: a run executing again after a failure."""
    return cls(type=StateType.RUNNING, name="Retrying", **kwargs)


def Late(cls: type[State[Any]] = State, scheduled_time: datetime | None = None, **kwargs: Any) -> State[Any]:
    """A Scheduled state named Late."""
    return Scheduled(cls=cls, scheduled_time=scheduled_time, name="Late", **kwargs)


def Submitting(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """A Pending state named Submitting."""
    return cls(type=StateType.PENDING, name="Submitting", **kwargs)


def InfrastructurePending(cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """A Pending state named InfrastructurePending."""
    return cls(type=StateType.PENDING, name="InfrastructurePending", **kwargs)


def NotReady(upstream_task_run_id: Any, cls: type[State[Any]] = State, **kwargs: Any) -> State[Any]:
    """The state of a run that never started because an upstream did not complete.

    Not a Prefect constructor, but exactly the state Prefect's engine builds.
    """
    kwargs.setdefault(
        "message",
        f"Upstream task run '{upstream_task_run_id}' did not reach a 'COMPLETED' state.",
    )
    return cls(type=StateType.PENDING, name="NotReady", **kwargs)


# -- exceptions and return values to states -------------------------------------------

_FAILED_PREFIXES = {
    "Task run": "Task run encountered an exception",
    "Flow run": "Flow run encountered an exception:",
}


def format_exception(exc: BaseException, tb: TracebackType | None = None) -> str:
    """`"ValueError: boom"`, as Prefect's; with `tb`, the whole traceback. An exception
    whose `__str__` raises is shown by its class name alone."""
    if tb is not None:
        import traceback  # only here: traceback is slow to import

        formatted = "".join(traceback.format_exception(type(exc), exc, tb))
        module = type(exc).__module__
        if module.startswith("ferroflow."):  # as Prefect trims its own module paths
            formatted = formatted.replace(f"{module}.{type(exc).__name__}", type(exc).__name__)
        return formatted
    text = safe_str(exc)
    return type(exc).__name__ if text is None else f"{type(exc).__name__}: {text}"


def exception_to_failed_state(
    exc: BaseException | None = None, *, run_kind: str = "Task run", **kwargs: Any
) -> State[Any]:
    """The Failed state for an exception raised by user code, with Prefect's message.

    `run_kind` is "Task run" or "Flow run"; Prefect's two engines word it differently
    (the flow's has a colon). A `message=` given, as Prefect allows, replaces that prefix.
    Without `exc`, the exception being handled is used.
    """
    if exc is None:
        exc = sys.exc_info()[1]
        if exc is None:
            raise ValueError("Exception was not passed and no active exception could be found.")
    prefix = kwargs.pop("message", None)
    if prefix is None:
        try:
            prefix = _FAILED_PREFIXES[run_kind]
        except KeyError:
            raise ValueError(
                f"run_kind must be 'Task run' or 'Flow run', not {run_kind!r}"
            ) from None
    if prefix and not prefix.endswith(" "):
        prefix += " "
    state = Failed(data=exc, message=prefix + format_exception(exc), **kwargs)
    state.state_details.retriable = False
    return state


def exception_to_crashed_state(exc: BaseException) -> State[Any]:
    """The Crashed state for an exception from outside user code (interrupts, signals, ...)."""
    asyncio = sys.modules.get("asyncio")  # if asyncio was never imported, exc can't be its
    if asyncio is not None and isinstance(exc, asyncio.CancelledError):
        message = "Execution was cancelled by the runtime environment."
    elif isinstance(exc, KeyboardInterrupt):
        message = "Execution was aborted by an interrupt signal."
    elif isinstance(exc, TerminationSignal):
        message = "Execution was aborted by a termination signal."
    elif isinstance(exc, SystemExit):
        message = "Execution was aborted by Python system exit call."
    else:
        message = f"Execution was interrupted by an unexpected exception: {format_exception(exc)}"
    return Crashed(message=message, data=exc)


def _is_state(obj: object) -> TypeGuard[State[Any]]:
    """`isinstance(obj, State)`, telling the type checkers it is a `State[Any]`."""
    return isinstance(obj, State)


def is_state_iterable(obj: Any) -> TypeGuard[Collection[State[Any]]]:
    """True for a non-empty list, set or tuple holding only States (not an annotation)."""
    if isinstance(obj, (list, set, tuple)) and obj and not isinstance(obj, BaseAnnotation):
        return all(isinstance(o, State) for o in cast("Collection[object]", obj))
    return False


def return_value_to_state(retval: Any) -> State[Any]:
    """The final state for a run that returned `retval`, by Prefect's rules.

    A hand-made state (no run ids in its details) is used as is; a run's state or a
    list/set/tuple of states is aggregated; anything else is a Completed value.
    """
    if _is_state(retval):
        state = retval
        details = state._state_details
        if details is None or (not details.flow_run_id and not details.task_run_id):
            return state
        states = StateGroup([state])
    elif is_state_iterable(retval):
        states = StateGroup(retval)
    else:
        states = None
    if states is not None:
        if states.all_completed():
            return State(StateType.COMPLETED, message="All states completed.", data=retval)
        if states.any_cancelled():
            message = f"{states.cancelled_count}/{states.total_count} states cancelled."
            return State(StateType.CANCELLED, message=message, data=retval)
        if states.any_paused():
            message = f"{states.paused_count}/{states.total_count} states paused."
            return State(StateType.PAUSED, message=message, data=retval)
        if states.any_failed():
            message = f"{states.fail_count}/{states.total_count} states failed."
        elif not states.all_final():
            message = f"{states.not_final_count}/{states.total_count} states are not final."
        else:
            message = "Given states: " + states.counts_message()
        return State(StateType.FAILED, message=message, data=retval)

    import inspect  # loaded by then: every task and flow reads its function's signature

    if inspect.isgenerator(retval):  # generators aren't portable: keep their items
        return State(StateType.COMPLETED, data=list(retval))
    return State(StateType.COMPLETED, data=retval)


def get_state_exception(state: State[Any]) -> BaseException:
    """The exception a failed, crashed or cancelled state stands for.

    The stored exception if there is one; for nested states, the first failure's;
    otherwise `FailedRun` / `CrashedRun` / `CancelledRun` carrying the message.
    """
    if state.type is StateType.FAILED:
        wrapper: type[Exception] = FailedRun
        default_message = "Run failed."
    elif state.type is StateType.CRASHED:
        wrapper = CrashedRun
        default_message = "Run crashed."
    elif state.type is StateType.CANCELLED:
        wrapper = CancelledRun
        default_message = "Run cancelled."
    else:
        raise ValueError(f"Expected failed or crashed state got {state!r}.")

    result = state.data
    if result is None:
        return wrapper(state.message or default_message)
    if isinstance(result, BaseException):
        return result
    if isinstance(result, str):
        return wrapper(result)
    if _is_state(result):
        return get_state_exception(result)
    if is_state_iterable(result):
        for inner in result:
            if inner.type in _FAILURE_TYPES:
                return get_state_exception(inner)
        raise ValueError("Failed state result was an iterable of states but none were failed.")
    raise TypeError(
        f"Unexpected result for failed state: {safe_repr(result)} —— "
        f"{type(result).__name__} cannot be resolved into an exception"
    )


def raise_state_exception(state: State[Any]) -> None:
    """Raise the state's exception if it failed, crashed or was cancelled; else do nothing."""
    if state.type in _FAILURE_TYPES:
        raise get_state_exception(state)


class StateGroup:
    """Counts of a collection of states by type, for aggregating them into one state."""

    def __init__(self, states: Collection[State[Any]]) -> None:
        self.states = states
        self.type_counts: Counter[StateType] = Counter(state.type for state in states)
        self.total_count = len(states)
        self.cancelled_count = self.type_counts[StateType.CANCELLED]
        self.final_count = sum(state.is_final() for state in states)
        self.not_final_count = self.total_count - self.final_count
        self.paused_count = self.type_counts[StateType.PAUSED]

    @property
    def fail_count(self) -> int:
        return self.type_counts[StateType.FAILED] + self.type_counts[StateType.CRASHED]

    def all_completed(self) -> bool:
        return self.type_counts[StateType.COMPLETED] == self.total_count

    def any_cancelled(self) -> bool:
        return self.cancelled_count > 0

    def any_failed(self) -> bool:
        return self.fail_count > 0

    def any_paused(self) -> bool:
        return self.paused_count > 0

    def all_final(self) -> bool:
        return self.final_count == self.total_count

    def counts_message(self) -> str:
        parts = [f"total={self.total_count}"]
        if self.not_final_count:
            parts.append(f"not_final={self.not_final_count}")
        parts += [f"{t.value!r}={n}" for t, n in self.type_counts.items() if n]
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"StateGroup<{self.counts_message()}>"
