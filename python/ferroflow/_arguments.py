"""Checking a call's arguments against the task's signature, and splitting `.map`
arguments into the mapped and the fixed ones, with Prefect's rules and error messages.

The signature is read once per task into a `Signature` plan; a call whose arguments
plainly fit (positional only, within the arity) skips `inspect`'s binding, which would
otherwise dominate the cost of a `.submit()`.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ferroflow._core import PrefectConcurrentFuture
from ferroflow.exceptions import (
    MappingLengthMismatch,
    MappingMissingIterable,
    ParameterBindError,
    ReservedArgumentError,
)
from ferroflow.utilities.annotations import allow_failure, opaque, quote, unmapped
from ferroflow.utilities.callables import BOUND, bind_method
from ferroflow.utilities.text import safe_repr

if TYPE_CHECKING:
    import inspect

    from ferroflow.utilities.annotations import BaseAnnotation

RESERVED = ("return_state", "wait_for")


class Signature:
    """What calls need to know of a function's parameters, computed once."""

    __slots__ = ("fn", "signature", "min_positional", "max_positional", "simple")

    def __init__(self, fn: Callable[..., Any], owner: str) -> None:
        import inspect  # here, not at import: `import ferroflow` stays fast

        self.fn = fn
        self.signature = inspect.signature(fn)
        parameters = self.signature.parameters
        for reserved in RESERVED:
            if reserved in parameters:
                raise ReservedArgumentError(
                    f"'{reserved}' is a reserved argument name and cannot be used in {owner} "
                    f"'{getattr(fn, '__name__', fn)}'."
                )
        kinds = [p.kind for p in parameters.values()]
        positional = [p for p in parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.max_positional = len(positional)
        self.min_positional = sum(1 for p in positional if p.default is p.empty)
        # No *args, **kwargs or required keyword-only parameters: arity alone decides.
        positional_kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        self.simple = all(k in positional_kinds for k in kinds)

    def check(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raises ParameterBindError, naming the function and parameter, if the call cannot bind."""
        if self.simple and not kwargs and self.min_positional <= len(args) <= self.max_positional:
            return
        self.bind(args, kwargs)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ParameterBindError.from_bind_failure(self.fn, exc, args, kwargs) from None
        bound.apply_defaults()
        return bound

    def parameters(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments by parameter name, defaults applied (Prefect's `parameters`)."""
        return dict(self.bind(args, kwargs).arguments)

    def to_call(self, parameters: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments from a parameters dict (Prefect's runner API)."""
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for name, parameter in self.signature.parameters.items():
            if name not in parameters:
                continue
            value = parameters[name]
            if parameter.kind is parameter.VAR_POSITIONAL:
                args.extend(value)
            elif parameter.kind is parameter.VAR_KEYWORD:
                kwargs.update(value)
            elif parameter.kind is parameter.KEYWORD_ONLY or kwargs:
                kwargs[name] = value
            else:
                args.append(value)
        return tuple(args), kwargs


def bound_copy(decorated: Any, instance: Any, owner: Any, owner_kind: str) -> Any:
    """A `Task` or `Flow` read through a class or an instance: itself, or a copy whose
    function is bound (to the instance; for a classmethod, to the class), as Prefect 3
    binds them like methods. `owner_kind` ("task" or "flow") names it in errors."""
    bound_fn = bind_method(decorated.fn, decorated._method_kind, instance, owner)
    if bound_fn is None:
        return decorated
    import copy  # here, not at import: only methods that are tasks or flows need it

    bound = copy.copy(decorated)
    bound.fn = bound_fn
    bound._method_kind = BOUND
    bound._signature = Signature(bound_fn, owner_kind)
    return bound


# Mapped inputs the engine reads by index as they are (they cannot change meanwhile).
_IMMUTABLE_SEQUENCES = (tuple, range)

# The classes `split_map` tests arguments against, typed `type[Any]` on purpose: what they
# hold is the user's (Any), and an `isinstance` against a generic class would narrow the
# argument to it with Unknown contents, which pyright's strict mode rejects at every use.
_WRAPPERS: tuple[type[Any], ...] = (allow_failure, quote, opaque)
_FUTURE: type[Any] = PrefectConcurrentFuture
_UNMAPPED: type[Any] = unmapped

#: The most runs one `.map` can have: the engine indexes runs with a u32.
MAX_MAP_RUNS = 2**32 - 1


def _check_map_size(task_name: str, name: str, value: Any) -> None:
    """An OverflowError, before anything is copied, for a mapped input that knows it holds
    more items than a map can have (a list of them would not fit in memory anyway)."""
    try:
        size = len(value)
    except TypeError:  # the bare sequence protocol, an iterator: its items are counted as read
        return
    if size > MAX_MAP_RUNS:
        raise OverflowError(
            f"Task {task_name!r}: a .map() can have at most {MAX_MAP_RUNS} runs; parameter {name!r} has {size} items"
        )


def _is_mappable(value: Any) -> bool:
    """Prefect's rule (`isiterable`): whatever `iter()` accepts, the old sequence protocol
    (`__getitem__` alone) included, except strings, bytes and files."""
    if isinstance(value, (str, bytes, io.IOBase)):
        return False
    if isinstance(value, Iterable):  # the ABC check: no iterator is made for the common cases
        return True
    try:
        iter(value)
    except TypeError:
        return False
    return True


class MapCall:
    """A `.map` call split into what every run shares and what each run gets."""

    __slots__ = ("args", "kwargs", "slots", "iterables")

    def __init__(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        slots: list[int | str],
        iterables: list[list[Any] | tuple[Any, ...] | range],
    ) -> None:
        self.args = args
        self.kwargs = kwargs
        self.slots = slots
        self.iterables = iterables


def split_map(task_name: str, signature: Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> MapCall:
    """Binds a `.map` call and classifies every parameter as mapped or fixed.

    `unmapped(x)` is fixed; any other iterable (not str/bytes/IO) is mapped, consumed
    into a list; a future at the top level is waited for and its result classified.
    `allow_failure`, `quote` and `opaque` are looked through and re-applied per run.
    """
    bound = signature.bind(args, kwargs)
    call_args: list[Any] = []
    call_kwargs: dict[str, Any] = {}
    slots: list[int | str] = []
    iterables: list[list[Any] | tuple[Any, ...] | range] = []
    lengths: dict[str, int] = {}
    for name, value in bound.arguments.items():
        parameter = signature.signature.parameters[name]
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            if parameter.kind is parameter.VAR_POSITIONAL:
                call_args.extend(value)
            else:
                call_kwargs.update(value)
            continue
        as_keyword = parameter.kind is parameter.KEYWORD_ONLY
        # pyright ignore: pyright makes `type()` of an Any `type[Unknown]` (mypy: `type[Any]`)
        # and reports it even when declared; the declared type is what later lines see.
        wrapper: type[BaseAnnotation[Any]] | None = type(value) if isinstance(value, _WRAPPERS) else None  # pyright: ignore[reportUnknownVariableType]
        inner = value.unwrap() if wrapper else value
        if isinstance(inner, _FUTURE):
            inner = inner.result()
        if isinstance(inner, _UNMAPPED):
            fixed: Any = inner.unwrap()
            values = None
        elif _is_mappable(inner):
            _check_map_size(task_name, name, inner)
            fixed = None
            if wrapper is not None:
                values = [wrapper(item) for item in inner]
            elif type(inner) in _IMMUTABLE_SEQUENCES:
                values = inner  # the engine reads it by index: no copy of a million items
            else:
                values = list(inner)  # a snapshot (lists may change later), as Prefect takes
            lengths[name] = len(values)
        else:
            fixed, values = value, None
        if values is not None:
            slots.append(name if as_keyword else len(call_args))
            iterables.append(values)
        # A mapped parameter keeps its place, filled per run by the engine.
        if as_keyword:
            call_kwargs[name] = fixed
        else:
            call_args.append(fixed)
    if not iterables:
        raise MappingMissingIterable(
            "No iterable parameters were received. Parameters for map must include at least one iterable. "
            f"Parameters: {safe_repr(dict(bound.arguments))} (task {task_name!r})"
        )
    if len(set(lengths.values())) > 1:
        raise MappingLengthMismatch(
            "Received iterable parameters with different lengths. Parameters for map must all be the same length. "
            f"Got lengths: {lengths} (task {task_name!r})"
        )
    return MapCall(tuple(call_args), call_kwargs, slots, iterables)

