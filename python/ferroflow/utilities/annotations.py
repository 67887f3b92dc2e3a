"""Prefect's argument annotations (`unmapped`, `allow_failure`, `quote`, `opaque`).

Each is a one-element tuple subclass, as in Prefect: tools that unpack tuples keep
working, construction is one C call, and the engine tells them apart with a cheap
`type(x) is ...` / `isinstance` check.
"""

from __future__ import annotations

import warnings
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

__all__ = ["BaseAnnotation", "NotSet", "Quote", "allow_failure", "opaque", "quote", "unmapped"]

T = TypeVar("T")

# `tuple`, for calling its own methods past the overrides below. Its element type is named
# for the checkers (Any: the wrapped value is the user's); on the bare class, pyright sees
# the element type as Unknown.
_tuple: type[tuple[Any, ...]] = tuple


class BaseAnnotation(tuple[T]):
    """Wraps one value; `unwrap()` gives it back and `rewrap(v)` wraps another in the same kind."""

    __slots__ = ()

    def __new__(cls, value: T) -> BaseAnnotation[T]:
        return _tuple.__new__(cls, (value,))

    if TYPE_CHECKING:

        @property
        def value(self) -> T: ...

    else:
        # itemgetter, as namedtuple's generated fields do: the cheapest attribute access.
        value = property(itemgetter(0))

    def unwrap(self) -> T:
        return self[0]

    def rewrap(self, value: T) -> BaseAnnotation[T]:
        return type(self)(value)

    def __eq__(self, other: object) -> bool:
        # `unmapped(1) != allow_failure(1)`: the kind of annotation is part of its meaning.
        if type(self) is not type(other):
            return False
        return _tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    # Prefect leaves these unhashable (defining __eq__ drops __hash__); keeping the tuple
    # hash lets annotated values sit in sets and dict keys, which nothing could rely on failing.
    __hash__ = _tuple.__hash__

    def __getnewargs__(self) -> tuple[T]:
        # tuple's own would hand `(value,)` to our one-value __new__ and nest it on unpickling;
        # process runners pickle these.
        value: T = _tuple.__getitem__(self, 0)
        return (value,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self[0]!r})"


class unmapped(BaseAnnotation[T]):
    """Pass the value whole to every child of a `.map`, instead of iterating it.

    Indexing returns the value for any index, so the mapper can treat it as an
    endless sequence of the same element.
    """

    __slots__ = ()

    # Deliberately incompatible with tuple's (a slice gives the value too, not a tuple).
    def __getitem__(self, _: object) -> T:  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]
        value: T = _tuple.__getitem__(self, 0)
        return value


class allow_failure(BaseAnnotation[T]):
    """Let the downstream run start even if this upstream failed; it receives the exception."""

    __slots__ = ()


class quote(BaseAnnotation[T]):
    """Hand the value to the task as is: no resolving, no traversal (fast for big inputs)."""

    __slots__ = ()

    def unquote(self) -> T:
        return self.unwrap()


class Quote(quote[T]):
    """Deprecated spelling of `quote`, kept because Prefect still accepts it."""

    __slots__ = ()

    def __new__(cls, expr: T) -> Quote[T]:
        warnings.warn(
            "Use of `Quote` is deprecated. Use `quote` instead.", DeprecationWarning, stacklevel=2
        )
        return _tuple.__new__(cls, (expr,))


class opaque(BaseAnnotation[T]):
    """Resolve a top-level future or state, but never traverse into the value it yields."""

    __slots__ = ()


class NotSet:
    """Sentinel telling "not given" from `None` in option defaults; the class is the value."""

