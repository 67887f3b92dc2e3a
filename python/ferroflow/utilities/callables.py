"""What `Task` and `Flow` share about the function they wrap: methods, classmethods and
staticmethods (bound through `__get__`, as in Prefect 3), and the function's metadata
copied onto the wrapper (Prefect calls `functools.update_wrapper`).

The pattern, for a decorator class `D` wrapping `fn`:

    fn, self._method_kind = unwrap_method(fn)      # first thing in __init__
    copy_metadata(self, fn)                        # before D sets its own attributes

    def __get__(self, instance, owner=None):
        bound_fn = bind_method(self.fn, self._method_kind, instance, owner)
        if bound_fn is None:
            return self
        bound = copy.copy(self); bound.fn = bound_fn; bound._method_kind = BOUND
        ...                                        # anything derived from fn, again
        return bound

and `with_options` passes `rewrap_method(self.fn, self._method_kind)` as the function,
so a copy made in a class body stays a classmethod or staticmethod.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import WRAPPER_ASSIGNMENTS
from types import MethodType
from typing import Any, cast

__all__ = [
    "BOUND",
    "CLASSMETHOD",
    "FUNCTION",
    "STATICMETHOD",
    "bind_method",
    "copy_metadata",
    "rewrap_method",
    "unwrap_method",
]

FUNCTION = "function"
CLASSMETHOD = "classmethod"
STATICMETHOD = "staticmethod"
#: A wrapper whose function was already bound by `__get__`: it binds no further.
BOUND = "bound"


def unwrap_method(fn: Any) -> tuple[Any, str]:
    """The function under a `classmethod` or `staticmethod`, and which of the kinds above
    it was (`@task` above `@classmethod`: the classmethod object is not callable)."""
    # The casts: after isinstance, pyright leaves the wrapped function's type Unknown.
    if isinstance(fn, classmethod):
        return cast("classmethod[Any, ..., Any]", fn).__func__, CLASSMETHOD
    if isinstance(fn, staticmethod):
        return cast("staticmethod[..., Any]", fn).__func__, STATICMETHOD
    return fn, FUNCTION


def rewrap_method(fn: Callable[..., Any], kind: str) -> Any:
    """`fn` wrapped again as the kind `unwrap_method` found, for a copy of the wrapper."""
    if kind == CLASSMETHOD:
        return classmethod(fn)
    if kind == STATICMETHOD:
        return staticmethod(fn)
    return fn


def bind_method(fn: Callable[..., Any], kind: str, instance: object, owner: Any) -> Callable[..., Any] | None:
    """What the wrapper's `__get__` should call instead of `fn`: `fn` bound to the class
    for a classmethod (read on the class or on an instance), bound to the instance for a
    plain function read on an instance; None when the wrapper is returned as it is (a
    staticmethod, a function read on its class, a wrapper already bound)."""
    if kind == CLASSMETHOD:
        return MethodType(fn, owner if owner is not None else type(instance))
    if kind != FUNCTION or instance is None:
        return None
    get = getattr(type(fn), "__get__", None)
    if get is None:  # a callable object that is not a descriptor binds nothing
        return None
    bound: Callable[..., Any] = get(fn, instance, owner)
    return bound


def copy_metadata(wrapper: Any, fn: Any) -> None:
    """`functools.update_wrapper(wrapper, fn)`, as Prefect's `Task` and `Flow` do:
    `__module__`, `__name__`, `__qualname__`, `__doc__`, `__annotations__` (and
    `__type_params__`) copied, `__wrapped__` set, and `fn`'s own attributes added; but an
    attribute of `fn` never shadows one the wrapper's class defines (`map`, `submit`, ...)."""
    for attribute in WRAPPER_ASSIGNMENTS:
        try:
            value = getattr(fn, attribute)
        except AttributeError:
            continue
        setattr(wrapper, attribute, value)
    own = getattr(fn, "__dict__", None)
    if isinstance(own, dict):
        attributes = cast("dict[str, Any]", own)  # the user function's own attributes
        target: object = wrapper  # pyright makes `type()` of an Any `type[Unknown]`
        cls = type(target)
        for key, value in attributes.items():
            if not hasattr(cls, key):
                wrapper.__dict__.setdefault(key, value)
    wrapper.__wrapped__ = fn
